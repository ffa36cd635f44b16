// Package policy decides who may do what in filegate, from Casbin policy
// lines stored in the database (table casbin_rule), under the Casbin model
// in casbin_model.conf. Everything is denied unless a line allows it.
//
// # The model
//
// A request is (subject, object, action). Subjects are "user:<name>",
// "token:<id>" and "anonymous"; every subject is implicitly also "anyone".
// The object is a node's lineage, the node ids from the root down
// ("root/ab12/cd34"), or "*" for actions not about one node (admin,
// view_files). Actions are stat, read, write, delete, share, admin and
// view_files.
//
//   - p, subject, object, action: subject may do action (one action, "*" or
//     "(a|b|c)") on the subtree of node object, or everywhere for "*". The
//     built-in lines (Builtin) give role:admin everything and define the
//     levels: metadata = stat, read = stat|read, full =
//     stat|read|write|delete|share.
//   - g, member, role: memberships (user in group, user in role:admin,
//     group in group), transitive.
//   - g2, subject, level, node: a grant of a level on a node, inherited by
//     its whole subtree. Tokens, group shares and public files
//     ("g2, anyone, level:read, <id>") are all grants.
//
// The matcher is
//
//	actionMatch(r.act, p.act) &&
//	  ((g(r.sub, p.sub) && within(r.obj, p.obj)) || granted(r.sub, p.sub, r.obj))
//
// where within says p.obj is "*" or a whole id of the lineage (a grant on
// node A never covers a sibling whose id merely starts like A's), and
// granted says some member of the subject's closure (itself, its groups,
// anyone) holds a g2 link to the level p.sub on an ancestor-or-self of the
// object.
//
// # Why decisions do not scan lines
//
// Casbin's generic enforcer evaluates the matcher once per p line, and its
// domain role manager keeps a role graph per domain, that is per granted
// file. With a grant per token and a direct rule per shared folder, both
// grow with the number of files. The Authorizer instead indexes the same
// lines by what a request can name: p lines by (subject, node) and by
// subject for "*", g2 grants by (node, subject). A decision walks the
// requester's closure S and the ids of the lineage and probes those maps:
// |S| x (depth + 1) probes, whatever the number of files, tokens, grants or
// rules. NewEnforcer builds the generic Casbin enforcer of the same model
// (with this package's functions and role managers); the tests check that
// both give the same answers.
//
// # Changes and other instances
//
// Apply and ApplyTx validate a Change against the model and write it in one
// transaction together with a new policy revision and a change log entry
// (tables policy_revision and policy_log). The local Authorizer applies
// the change to memory when the transaction commits. Run follows changes
// made elsewhere (other instances, `filegate policy` on the same
// database): it polls the revision row every PollInterval and, on
// PostgreSQL, listens for the NOTIFY sent at commit, then applies the
// logged lines since its own revision, or reloads everything when the log
// was pruned or a CSV import replaced the policy.
package policy
