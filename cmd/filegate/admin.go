package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/filegate/filegate/migrations"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// parseInterleaved parses flags that may come before, between or after
// the positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// openSubcommand parses an admin subcommand's flags and positional
// arguments, checks their count against need, and opens the store.
func openSubcommand(ctx context.Context, cmd string, fs *flag.FlagSet, sf *storeFlags, args []string,
	need map[string]int, stderr io.Writer) ([]string, *opened, error) {
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return nil, nil, err
	}
	n, known := need[args[0]]
	if !known {
		return nil, nil, fmt.Errorf("unknown %s command %q", cmd, args[0])
	}
	if len(pos) != n {
		return nil, nil, fmt.Errorf("%s %s takes %d argument(s)", cmd, args[0], n)
	}
	o, err := openForAdmin(ctx, sf, stderr)
	return pos, o, err
}

func openForAdmin(ctx context.Context, sf *storeFlags, stderr io.Writer) (*opened, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return sf.open(ctx, log)
}

func migrateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	var sf storeFlags
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	db, err := model.OpenDB(ctx, model.DBOptions{URL: sf.databaseURL, DataDir: sf.data})
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := migrations.Up(ctx, db)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "database is up to date")
	}
	for _, a := range applied {
		fmt.Fprintln(stdout, "applied", a)
	}
	return nil
}

func readPassword(stdin io.Reader, fromStdin bool) (string, error) {
	if !fromStdin {
		return "", errors.New("give the password on standard input with --password-stdin")
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) < 8 {
		return "", errors.New("the password must have at least 8 characters")
	}
	return pw, nil
}

func userCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: filegate user add|list|passwd|disable|enable|quota|unblock")
	}
	if i := slices.IndexFunc(args, negativeArg.MatchString); i > 0 && args[0] == "quota" {
		_, err := parseQuota(args[i])
		return err
	}
	fs := newFlagSet("user "+args[0], stderr)
	var sf storeFlags
	sf.register(fs)
	admin := fs.Bool("admin", false, "give the user the admin role")
	pwStdin := fs.Bool("password-stdin", false, "read the password from standard input")
	pos, o, err := openSubcommand(ctx, "user", fs, &sf, args,
		map[string]int{"add": 1, "list": 0, "passwd": 1, "disable": 1, "enable": 1, "quota": 2, "unblock": 1}, stderr)
	if err != nil {
		return err
	}
	defer o.Close()
	switch args[0] {
	case "add":
		pw, err := readPassword(stdin, *pwStdin)
		if err != nil {
			return err
		}
		u, err := o.repo.CreateUser(ctx, pos[0], pw)
		if err != nil {
			return err
		}
		if *admin {
			if err := o.authz.Apply(ctx, policy.Change{Add: [][]string{{"g", "user:" + u.Name, "role:admin"}}}); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "created user %s (id %s)\n", u.Name, u.ID)
	case "list":
		users, err := o.repo.Users(ctx)
		if err != nil {
			return err
		}
		blocks, err := o.repo.SignInBlocks(ctx, time.Now())
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tID\tADMIN\tDISABLED\tQUOTA\tUSED\tCREATED\tSIGN-INS")
		for _, u := range users {
			isAdmin := o.authz.Decide(ctx, "user:"+u.Name, "admin", "*").Allowed
			used, err := o.repo.QuotaUsed(ctx, u.ID)
			if err != nil {
				return err
			}
			quota := "none"
			if u.QuotaBytes > 0 {
				quota = human(u.QuotaBytes)
			}
			signIns := "open"
			if account, _ := model.SignInKeys(u.Name, ""); !blocks[account].IsZero() {
				signIns = "blocked until " + blocks[account].Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%s\t%s\t%s\t%s\n", u.Name, u.ID, isAdmin, u.Disabled, quota, human(used),
				u.CreatedAt.Format("2006-01-02 15:04"), signIns)
		}
		return tw.Flush()
	case "passwd":
		pw, err := readPassword(stdin, *pwStdin)
		if err != nil {
			return err
		}
		if err := o.repo.SetPassword(ctx, pos[0], pw); err != nil {
			return err
		}
		// A new password ends a block the old one's guessers set: the
		// usual reason for a reset is a user who could not sign in.
		account, _ := model.SignInKeys(pos[0], "")
		if err := o.repo.SignInSucceeded(ctx, account); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password of %s changed\n", pos[0])
	case "disable", "enable":
		if err := o.repo.SetDisabled(ctx, pos[0], args[0] == "disable"); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s %sd\n", pos[0], args[0])
	case "unblock":
		// Only the name's count: an address that guessed keeps its own.
		account, _ := model.SignInKeys(pos[0], "")
		if err := o.repo.SignInSucceeded(ctx, account); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "failed sign-ins of %s forgotten; password sign-ins are checked again\n", pos[0])
	case "quota":
		size, err := parseQuota(pos[1])
		if err != nil {
			return err
		}
		if err := o.repo.SetQuota(ctx, pos[0], size); err != nil {
			return fmt.Errorf("user %s: %w", pos[0], err)
		}
		if size == 0 {
			fmt.Fprintf(stdout, "quota of %s removed\n", pos[0])
		} else {
			fmt.Fprintf(stdout, "quota of %s set to %s (%d bytes)\n", pos[0], human(size), size)
		}
	}
	return nil
}

func groupCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: filegate group add|add-member|remove-member|list")
	}
	fs := newFlagSet("group "+args[0], stderr)
	var sf storeFlags
	sf.register(fs)
	desc := fs.String("description", "", "what the group is for")
	pos, o, err := openSubcommand(ctx, "group", fs, &sf, args,
		map[string]int{"add": 1, "add-member": 2, "remove-member": 2, "list": 0}, stderr)
	if err != nil {
		return err
	}
	defer o.Close()
	switch args[0] {
	case "add":
		if _, err := o.repo.CreateGroup(ctx, pos[0], *desc); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created group %s\n", pos[0])
	case "add-member", "remove-member":
		if _, err := o.repo.GroupByName(ctx, pos[0]); err != nil {
			return fmt.Errorf("group %s: %w", pos[0], err)
		}
		if _, err := o.repo.UserByName(ctx, pos[1]); err != nil {
			return fmt.Errorf("user %s: %w", pos[1], err)
		}
		rule := [][]string{{"g", "user:" + pos[1], "group:" + pos[0]}}
		change := policy.Change{Add: rule}
		if args[0] == "remove-member" {
			change = policy.Change{Remove: rule}
		}
		if err := o.authz.Apply(ctx, change); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s %s\n", args[0], pos[0], pos[1])
	case "list":
		groups, err := o.repo.Groups(ctx)
		if err != nil {
			return err
		}
		members, err := o.authz.Rules(ctx, policy.Filter{Ptype: "g"})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tMEMBERS\tDESCRIPTION")
		for _, g := range groups {
			var names []string
			for _, m := range members {
				if len(m) >= 3 && m[2] == "group:"+g.Name {
					names = append(names, strings.TrimPrefix(m[1], "user:"))
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Name, strings.Join(names, ","), g.Description)
		}
		return tw.Flush()
	}
	return nil
}

func apikeyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: filegate apikey create USER [--label L] | revoke KEY_ID")
	}
	fs := newFlagSet("apikey "+args[0], stderr)
	var sf storeFlags
	sf.register(fs)
	label := fs.String("label", "", "what the key is for")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 || (args[0] != "create" && args[0] != "revoke") {
		return errors.New("usage: filegate apikey create USER [--label L] | revoke KEY_ID")
	}
	o, err := openForAdmin(ctx, &sf, stderr)
	if err != nil {
		return err
	}
	defer o.Close()
	if args[0] == "revoke" {
		if err := o.repo.RevokeAPIKey(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked key %s\n", pos[0])
		return nil
	}
	k, cred, err := o.repo.CreateAPIKey(ctx, pos[0], *label, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "created key %s for %s; it is shown once:\n", k.ID, pos[0])
	fmt.Fprintln(stdout, cred)
	return nil
}
