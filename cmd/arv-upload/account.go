package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// newAccountCommand builds `arv-upload account create|list|deactivate`.
// connect returns an API client for the caller's own credentials.
func newAccountCommand(connect func(cmd *cobra.Command) (*keepclient.Client, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "account",
		Short: "Create, list and deactivate uploader accounts",
		Long: `An uploader account is a restricted user owned by you, for a sequencing
machine: its token can only upload (create collections, update and tag its
own collections). You see and can change everything it uploads, and
deactivating it revokes its token at once.

On a cluster whose API server has no uploader_accounts resource (a real
Arvados cluster), the site runs the account broker (arv-server accounts):
point these commands at it with --accounts-url or ARVADOS_ACCOUNTS_URL
when the site does not route it under the API host itself.`,
	}
	cmd.PersistentFlags().String("accounts-url", "", "where uploader accounts are served: host:port or https://host:port (default $ARVADOS_ACCOUNTS_URL, else the API host)")
	// api is the API server (printed for the uploader); accounts is where
	// uploader_accounts calls go, with the same token.
	both := func(cmd *cobra.Command) (api, accounts *keepclient.Client, err error) {
		api, err = connect(cmd)
		if err != nil {
			return nil, nil, err
		}
		u, _ := cmd.Flags().GetString("accounts-url")
		if u == "" {
			u = os.Getenv("ARVADOS_ACCOUNTS_URL")
		}
		if u == "" {
			u = settingsConf()["ARVADOS_ACCOUNTS_URL"]
		}
		if u == "" {
			return api, api, nil
		}
		host := strings.TrimSuffix(strings.TrimPrefix(u, "https://"), "/")
		if strings.HasPrefix(u, "http://") || strings.ContainsAny(host, "/ ") {
			return nil, nil, usageError{fmt.Errorf("accounts URL %q: give host[:port] or https://host[:port]", u)}
		}
		accounts, err = keepclient.NewClient(keepclient.Config{APIHost: host, Token: api.Token(), Insecure: api.TLSConfig().InsecureSkipVerify})
		if err != nil {
			return nil, nil, fmt.Errorf("create accounts client: %w", err)
		}
		return api, accounts, nil
	}
	accountsOnly := func(cmd *cobra.Command) (*keepclient.Client, error) {
		_, c, err := both(cmd)
		return c, err
	}
	cmd.AddCommand(newAccountCreateCommand(both), newAccountListCommand(accountsOnly), newAccountDeactivateCommand(accountsOnly))
	return cmd
}

func newAccountCreateCommand(connect func(*cobra.Command) (api, accounts *keepclient.Client, err error)) *cobra.Command {
	var (
		expires, project, name string
		asJSON, slot           bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME | create --slot [--name NAME]",
		Short: "Create an uploader account (or, with --slot, an upload slot) and print its token (shown only once)",
		Long: `Create an uploader account and print its token (shown only once).

With --slot, create an upload slot instead, with your own token and no
administrator's help: an empty collection (in --project-uuid, else your home
project) and a token of yours scoped to reading and updating that one
collection, for one upload with arv-upload start --update-collection.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if name != "" {
					return usageError{fmt.Errorf("give the name once: as NAME or as --name")}
				}
				name = args[0]
			}
			if name == "" && !slot {
				return usageError{fmt.Errorf("give the account a name: arv-upload account create NAME")}
			}
			var exp *time.Time
			if expires != "" {
				t, err := parseExpiry(expires, time.Now())
				if err != nil {
					return usageError{err}
				}
				exp = &t
			}
			c, ac, err := connect(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if slot {
				if name == "" {
					name = "Upload slot " + time.Now().UTC().Format("2006-01-02 15:04:05 UTC")
				}
				s, err := c.CreateUploadSlot(cmd.Context(), name, project, exp)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(out)
					enc.SetIndent("", "  ")
					return enc.Encode(s)
				}
				fmt.Fprintf(out, "Upload slot %q created: collection %s (owned by %s)\n", s.Name, s.CollectionUUID, s.OwnerUUID)
				if s.ExpiresAt != nil {
					fmt.Fprintf(out, "Its token expires: %s\n", s.ExpiresAt.Local().Format(time.RFC1123))
				}
				fmt.Fprintf(out, "\nIts token is shown only this once; it may only read and update that collection. On the uploading machine run:\n\n")
				fmt.Fprintf(out, "  export ARVADOS_API_HOST=%s\n", c.APIHost())
				fmt.Fprintf(out, "  export ARVADOS_API_TOKEN=%s\n", s.APIToken)
				fmt.Fprintf(out, "  arv-upload start --update-collection %s /path/to/run\n\n", s.CollectionUUID)
				fmt.Fprintf(out, "To revoke it: arv api_client_authorization delete --uuid %s\n", s.TokenUUID)
				return nil
			}
			acct, err := ac.CreateUploaderAccount(cmd.Context(), name, exp, project)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(acct)
			}
			fmt.Fprintf(out, "Uploader account %q created: %s (owned by %s)\n", acct.Name, acct.UUID, acct.OwnerUUID)
			if acct.ExpiresAt != nil {
				fmt.Fprintf(out, "Expires: %s\n", acct.ExpiresAt.Local().Format(time.RFC1123))
			}
			fmt.Fprintf(out, "\nIts token is shown only this once. On the uploading machine run:\n\n")
			fmt.Fprintf(out, "  export ARVADOS_API_HOST=%s\n", c.APIHost())
			fmt.Fprintf(out, "  export ARVADOS_API_TOKEN=%s\n", acct.APIToken)
			if acct.ProjectUUID != "" {
				fmt.Fprintf(out, "  arv-upload start --project-uuid %s --name 'run name' /path/to/run\n\n", acct.ProjectUUID)
			} else {
				fmt.Fprintf(out, "  arv-upload start --name 'run name' /path/to/run\n\n")
			}
			fmt.Fprintf(out, "When the run is done: arv-upload account deactivate %s\n", acct.UUID)
			return nil
		},
	}
	cmd.Flags().StringVar(&expires, "expires", "", "expiry as a duration (72h, 14d) or a date (2026-12-31 or RFC 3339)")
	cmd.Flags().StringVar(&project, "project-uuid", "", "a project you manage, where the account may upload (its drop box); with --slot, where the slot's collection goes")
	cmd.Flags().BoolVar(&slot, "slot", false, "create an upload slot (a collection and a token for it alone) with your own token")
	cmd.Flags().StringVar(&name, "name", "", "name of the account, or of the slot's collection")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the account or slot (with its token) as JSON")
	return cmd
}

func newAccountListCommand(connect func(*cobra.Command) (*keepclient.Client, error)) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List your uploader accounts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			accts, err := c.ListUploaderAccounts(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if accts == nil {
					accts = []arvados.UploaderAccount{}
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(accts)
			}
			if len(accts) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "No uploader accounts. Create one with: arv-upload account create NAME")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "UUID\tNAME\tACTIVE\tEXPIRES\tCREATED")
			for _, a := range accts {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", a.UUID, a.Name, a.IsActive, fmtTime(a.ExpiresAt), fmtTime(a.CreatedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newAccountDeactivateCommand(connect func(*cobra.Command) (*keepclient.Client, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "deactivate UUID",
		Short: "Deactivate an uploader account; its token stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			acct, err := c.DeactivateUploaderAccount(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Uploader account %s (%s) deactivated; its tokens are revoked.\n", acct.UUID, acct.Name)
			return nil
		},
	}
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

// parseExpiry accepts a duration ("72h", "14d") or a date ("2026-12-31",
// RFC 3339) and returns an absolute time in the future.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if strings.HasSuffix(s, "d") {
		var days int
		if _, err := fmt.Sscanf(s, "%dd", &days); err == nil && days > 0 && fmt.Sprintf("%dd", days) == s {
			return now.Add(time.Duration(days) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("--expires %q: the duration must be positive", s)
		}
		return now.Add(d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			if layout == "2006-01-02" {
				t = t.Add(24*time.Hour - time.Second) // the end of that day
			}
			if !t.After(now) {
				return time.Time{}, fmt.Errorf("--expires %q is in the past", s)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--expires %q: use a duration like 72h or 14d, or a date like 2026-12-31", s)
}
