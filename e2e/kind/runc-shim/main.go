// kubento-runc: runc with the capabilities this machine's root does not have
// taken out of the container's process.
//
// `docker run --privileged` asks runc for every capability Docker knows; where
// root lacks one (CAP_SYS_RESOURCE on these VMs), runc fails with "unable to
// apply caps: operation not permitted" and no kind node can start. Registered
// as dockerd's default runtime (--add-runtime kubento-runc=PATH
// --default-runtime kubento-runc), this drops every capability outside the
// caller's bounding set from the bundle's config.json (create, run) or the
// --process file (exec), then execs runc with the same arguments. Everything
// else passes through untouched. Where root has every capability it changes
// nothing.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The kernel's capability numbers (include/uapi/linux/capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// runc's global options that take a value (they come before the command).
var globalWithValue = map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}

func missingCaps() (map[string]bool, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapBnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil, err
			}
			missing := map[string]bool{}
			for i, name := range capNames {
				if mask&(1<<uint(i)) == 0 {
					missing[name] = true
				}
			}
			return missing, nil
		}
	}
	return nil, fmt.Errorf("no CapBnd in /proc/self/status")
}

// command returns runc's command and the index after it.
func command(args []string) (string, int) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return a, i + 1
		}
		if globalWithValue[a] {
			i++
		}
	}
	return "", len(args)
}

// option returns the value of --long/-short among the command's options.
func option(args []string, long, short string) string {
	for i, a := range args {
		if (a == long || a == short) && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, long+"="); ok {
			return v
		}
	}
	return ""
}

func filterCaps(caps any, missing map[string]bool) (any, bool) {
	list, ok := caps.([]any)
	if !ok {
		return caps, false
	}
	kept, changed := []any{}, false
	for _, c := range list {
		if name, _ := c.(string); missing[name] {
			changed = true
			continue
		}
		kept = append(kept, c)
	}
	return kept, changed
}

// edit removes the missing capabilities from a process object (config.json's
// "process", or an exec --process file) in place.
func edit(path string, inProcess bool, missing map[string]bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return err
	}
	process := doc
	if inProcess {
		p, ok := doc["process"].(map[string]any)
		if !ok {
			return nil
		}
		process = p
	}
	caps, ok := process["capabilities"].(map[string]any)
	if !ok {
		return nil
	}
	changed := false
	for set, list := range caps {
		var c bool
		caps[set], c = filterCaps(list, missing)
		changed = changed || c
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".kubento-runc"
	if err := os.WriteFile(tmp, out, info.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func main() {
	args := os.Args[1:]
	runc := os.Getenv("KUBENTO_RUNC")
	if runc == "" {
		var err error
		if runc, err = exec.LookPath("runc"); err != nil {
			fmt.Fprintln(os.Stderr, "kubento-runc: runc not found:", err)
			os.Exit(1)
		}
	}
	cmd, rest := command(args)
	var target string
	inProcess := true
	switch cmd {
	case "create", "run":
		bundle := option(args[rest:], "--bundle", "-b")
		if bundle == "" {
			bundle = "."
		}
		target = filepath.Join(bundle, "config.json")
	case "exec":
		target, inProcess = option(args[rest:], "--process", "-p"), false
	}
	if target != "" {
		missing, err := missingCaps()
		if err == nil && len(missing) > 0 {
			err = edit(target, inProcess, missing)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubento-runc:", err)
			os.Exit(1)
		}
	}
	if err := syscall.Exec(runc, append([]string{"runc"}, args...), os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, "kubento-runc: exec runc:", err)
		os.Exit(1)
	}
}
