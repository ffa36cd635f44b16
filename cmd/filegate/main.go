// Command filegate is the one binary of filegate: the server, its schema
// migrations, account and policy administration straight against the
// database, and a resumable upload client.
//
// Every flag has an environment equivalent: --database-url is
// FILEGATE_DATABASE_URL, and so on.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `filegate: a gateway for sensitive files (WebDAV, tus, files API)

Usage:
  filegate serve      [flags]                 run the server
  filegate migrate    [flags]                 apply database migrations and exit
  filegate user add NAME [--admin] [--password-stdin]
  filegate user list | passwd NAME [--password-stdin] | disable NAME | enable NAME
  filegate user quota NAME SIZE               storage quota: 2GiB or 10G binary, 1.5GB decimal; 0 or none removes it
  filegate user unblock NAME                  forget NAME's failed sign-ins, ending a block
  filegate group add NAME | add-member GROUP USER | remove-member GROUP USER | list
  filegate policy list|add|remove|what-if|explain|import|export   (see filegate policy)
  filegate apikey create USER [--label L] | revoke KEY_ID
  filegate audit verify                       check the audit trail's hash chain
  filegate check [--quick] [--max-rate 50MB]  read back every file and compare it with its recorded size and SHA-256
  filegate backup DIR                         consistent copy of a SQLite store (database and verified bytes) into DIR
  filegate upload FILE... --to URL/FOLDER     resumable upload through the tus door
  filegate version

Run "filegate COMMAND -h" for a command's flags.
`

// version is set by the Makefile through -ldflags.
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "filegate:", err)
		os.Exit(1)
	}
}

// run dispatches a command line; it is main without the process around it,
// so tests can drive every command in-process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("a command is required")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stdout, stderr)
	case "migrate":
		return migrateCmd(ctx, rest, stdout, stderr)
	case "user":
		return userCmd(ctx, rest, stdin, stdout, stderr)
	case "group":
		return groupCmd(ctx, rest, stdout, stderr)
	case "policy":
		return policyCmd(ctx, rest, stdin, stdout, stderr)
	case "apikey":
		return apikeyCmd(ctx, rest, stdout, stderr)
	case "upload":
		return uploadCmd(ctx, rest, stdin, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "filegate", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "audit":
		return auditCmd(ctx, rest, stdout, stderr)
	case "check":
		return checkCmd(ctx, rest, stdout, stderr)
	case "backup":
		return backupCmd(ctx, rest, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
