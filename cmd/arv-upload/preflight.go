package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/keepclient"
)

// preflight checks, before a job exists, what the cluster would refuse
// only later: the token, and that the owner asked for exists and is
// writable (a project or a user).
func preflight(ctx context.Context, c *keepclient.Client, opts agent.Options) error {
	if _, err := c.CurrentUser(ctx); err != nil {
		if errors.Is(err, keepclient.ErrTokenRefused) {
			return fmt.Errorf("the API server refused the token (revoked, expired, or its account deactivated): %w", err)
		}
		return fmt.Errorf("check the token with the API server: %w", err)
	}
	if len(opts.StorageClasses) > 0 || opts.Replication > 0 {
		if err := checkClassesAndReplication(ctx, c, opts); err != nil {
			return err
		}
	}
	if o := opts.ProjectUUID; o != "" {
		res := ""
		switch {
		case strings.Contains(o, "-j7d0g-"):
			res = "groups"
		case strings.Contains(o, "-tpzed-"):
			res = "users"
		default:
			return usageError{fmt.Errorf("--project-uuid %q is not a project (xxxxx-j7d0g-...) or user (xxxxx-tpzed-...) UUID", o)}
		}
		var owner struct {
			CanWrite *bool `json:"can_write"`
		}
		err := c.Call(ctx, http.MethodGet, "arvados/v1/"+res+"/"+url.PathEscape(o), url.Values{"select": {`["uuid","can_write"]`}}, nil, &owner)
		switch {
		case keepclient.IsStatus(err, http.StatusNotFound):
			return usageError{fmt.Errorf("--project-uuid %s: no such project or user, or it is not shared with you", o)}
		case err != nil:
			return fmt.Errorf("check --project-uuid %s: %w", o, err)
		case owner.CanWrite != nil && !*owner.CanWrite:
			return usageError{fmt.Errorf("--project-uuid %s: you may read it but not write to it; ask its owner for can_write, or choose another", o)}
		}
	}
	return nil
}

// checkClassesAndReplication refuses storage classes the cluster does not
// define and a replication no set of its keepstores can give, at start
// rather than as a 507 days later. Through a proxy the keepstores are not
// known: replication is then the proxy's to refuse.
func checkClassesAndReplication(ctx context.Context, c *keepclient.Client, opts agent.Options) error {
	cc, err := c.ClusterConfig(ctx)
	if err != nil {
		return fmt.Errorf("read the cluster's configuration: %w", err)
	}
	if len(cc.StorageClasses) > 0 {
		var known []string
		for name := range cc.StorageClasses {
			known = append(known, name)
		}
		sort.Strings(known)
		for _, sc := range opts.StorageClasses {
			if _, ok := cc.StorageClasses[sc]; !ok {
				return usageError{fmt.Errorf("--storage-classes %s: the cluster has no such class (it has: %s)", sc, strings.Join(known, ", "))}
			}
		}
	}
	if opts.Replication > 0 {
		svcs, err := c.KeepServicesAccessible(ctx)
		if err != nil {
			return fmt.Errorf("list the cluster's keep services: %w", err)
		}
		disks := 0
		for _, s := range svcs {
			if s.ServiceType == "proxy" {
				return nil
			}
			if !s.ReadOnly {
				disks++
			}
		}
		if disks > 0 && opts.Replication > disks {
			return usageError{fmt.Errorf("--replication %d: the cluster has %d writable keepstore(s); ask for at most %d", opts.Replication, disks, disks)}
		}
	}
	return nil
}
