/*
 * hook-exec: runs one exec hook command inside a target container (DESIGN §6), started by the
 * sidecar with an EMPTY environment. Statically linked on purpose: no dynamic loader runs, so no
 * loader variable (LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH, ...) and no library the app wrote can run
 * with the sidecar's uid or capabilities. The target's environment reaches only the final execve,
 * after the uid/gid/groups/capability switch.
 *
 *   hook-exec --uid U --gid G --groups G1,G2 [--bounding HEX] -- COMMAND [ARG...]
 *   fd 3: the target's root directory   fd 4: its working directory
 *   fd 5: its environment, NAME=value entries separated by NUL, read to EOF
 *
 * The supervisor (this process, still privileged, never in the target's root) is a child subreaper:
 * every process the command starts, setsid'd or not, stays its descendant. When the command exits,
 * or when SIGTERM arrives (the hook's timeout or deadline), it freezes every remaining descendant with
 * SIGSTOP (so none can fork past the scan), SIGKILLs them, reaps them, then exits with the command's
 * status (re-raising a terminating signal). So no process a handler started outlives the handler.
 *
 * Exit codes of its own: 125 setup failed (message on stderr), 126 command not executable,
 * 127 command not found.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FD_ROOT 3
#define FD_CWD 4
#define FD_ENV 5
#define ENV_MAX (16u << 20) /* far above what execve accepts (ARG_MAX) */
#define MAX_GROUPS 65536
#define CLEANUP_ROUNDS 50 /* x up to 100 ms: a bounded cleanup (5 s) even if something cannot be killed */

static void die(int code, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  /* One write: the message is not interleaved with the command's output. */
  char line[600];
  int m = snprintf(line, sizeof line, "hook-exec: %.*s\n", n, buf);
  if (m > 0) (void)!write(2, line, (size_t)m < sizeof line ? (size_t)m : sizeof line - 1);
  _exit(code);
}

static long parse_num(const char *s, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v < 0 || v > 0xffffffffL) die(125, "%s: not a number: %s", what, s);
  return v;
}

/* ---------------------------------------------------------------- environment from fd 5 */

static char **read_env(void) {
  size_t cap = 64 * 1024, len = 0;
  char *buf = malloc(cap + 1);
  if (!buf) die(125, "out of memory");
  for (;;) {
    if (len == cap) {
      if (cap >= ENV_MAX) die(125, "target environment larger than %u bytes", ENV_MAX);
      cap *= 2;
      buf = realloc(buf, cap + 1);
      if (!buf) die(125, "out of memory");
    }
    ssize_t n = read(FD_ENV, buf + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die(125, "reading the target environment: %s", strerror(errno));
    if (n == 0) break;
    len += (size_t)n;
  }
  close(FD_ENV);
  buf[len] = '\0';
  size_t count = 0;
  for (size_t i = 0; i < len; i++) if (buf[i] == '\0') count++;
  char **env = calloc(count + 2, sizeof *env);
  if (!env) die(125, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < len;) {
    size_t l = strlen(buf + i);
    if (l > 0 && strchr(buf + i, '=') && buf[i] != '=') env[k++] = buf + i;
    i += l + 1;
  }
  env[k] = NULL;
  return env;
}

static const char *env_get(char **env, const char *name) {
  size_t nl = strlen(name);
  const char *found = NULL;
  for (char **e = env; *e; e++) if (strncmp(*e, name, nl) == 0 && (*e)[nl] == '=') found = *e + nl + 1; /* the last one wins */
  return found;
}

/* ---------------------------------------------------------------- capabilities (raw syscalls) */

static int capget_all(struct __user_cap_data_struct d[2]) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  return (int)syscall(SYS_capget, &h, d);
}

static int capset_all(struct __user_cap_data_struct d[2]) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  return (int)syscall(SYS_capset, &h, d);
}

/* ---------------------------------------------------------------- the command (child) */

static void exec_command(char **argv, char **env) {
  const char *cmd = argv[0];
  if (strchr(cmd, '/')) {
    execve(cmd, argv, env);
    die(errno == ENOENT ? 127 : 126, "cannot run %s: %s", cmd, strerror(errno));
  }
  /* PATH search with the TARGET's PATH (execvpe would use ours, which is empty). */
  const char *path = env_get(env, "PATH");
  if (!path || !*path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  int saw_eacces = 0;
  size_t cl = strlen(cmd);
  for (const char *p = path;;) {
    const char *colon = strchr(p, ':');
    size_t dl = colon ? (size_t)(colon - p) : strlen(p);
    char full[4096];
    if (dl + cl + 2 <= sizeof full) {
      if (dl == 0) snprintf(full, sizeof full, "%s", cmd);
      else snprintf(full, sizeof full, "%.*s/%s", (int)dl, p, cmd);
      execve(full, argv, env);
      if (errno == EACCES) saw_eacces = 1;
      else if (errno != ENOENT && errno != ENOTDIR) die(126, "cannot run %s: %s", full, strerror(errno));
    }
    if (!colon) break;
    p = colon + 1;
  }
  if (saw_eacces) die(126, "cannot run %s: %s", cmd, strerror(EACCES));
  die(127, "cannot run %s: %s", cmd, strerror(ENOENT));
}

static void child(char **argv, char **env, uid_t uid, gid_t gid, gid_t *groups, size_t ngroups, int narrow, unsigned long long keep, const sigset_t *oldmask) {
  /* The command starts with default signal handling and the mask the sidecar gave us. */
  for (int s = 1; s < NSIG; s++) if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
  sigprocmask(SIG_SETMASK, oldmask, NULL);
  prctl(PR_SET_PDEATHSIG, 0);
  if (fchdir(FD_ROOT) != 0) die(125, "entering the target's root: %s", strerror(errno));
  if (chroot(".") != 0) die(125, "chroot into the target's root: %s (needs CAP_SYS_CHROOT)", strerror(errno));
  if (fchdir(FD_CWD) != 0) die(125, "entering the target's working directory: %s", strerror(errno));
  close(FD_ROOT);
  close(FD_CWD);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die(125, "no_new_privs: %s", strerror(errno));
  if (setgroups(ngroups, groups) != 0) die(125, "setgroups failed: %s (needs CAP_SETGID)", strerror(errno));
  if (setresgid(gid, gid, gid) != 0) die(125, "setresgid failed: %s (needs CAP_SETGID)", strerror(errno));
  if (narrow) {
    for (int c = 0; c < 64; c++) {
      if (keep & (1ULL << c)) continue;
      if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) {
        if (errno == EINVAL) break; /* past the kernel's last capability */
        die(125, "dropping capability %d from the bounding set: %s (needs CAP_SETPCAP)", c, strerror(errno));
      }
    }
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  struct __user_cap_data_struct d[2];
  if (capget_all(d) != 0) die(125, "capget: %s", strerror(errno));
  d[0].inheritable = d[1].inheritable = 0;
  if (capset_all(d) != 0) die(125, "clearing inheritable capabilities: %s", strerror(errno));
  if (setresuid(uid, uid, uid) != 0) die(125, "setuid failed: %s (needs CAP_SETUID)", strerror(errno));
  if (uid != 0) {
    /* Fail closed: a uid change away from 0 must have cleared every capability. */
    if (capget_all(d) != 0) die(125, "capget: %s", strerror(errno));
    if (d[0].effective | d[1].effective | d[0].permitted | d[1].permitted) die(125, "capabilities left after switching to uid %u; refusing to run the command", (unsigned)uid);
  }
  exec_command(argv, env);
}

/* ---------------------------------------------------------------- leftovers (supervisor) */

typedef struct {
  pid_t *v;
  size_t n, cap;
} pidset;

static int has(const pidset *s, pid_t p) {
  for (size_t i = 0; i < s->n; i++) if (s->v[i] == p) return 1;
  return 0;
}

static void add(pidset *s, pid_t p) {
  if (s->n == s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 64;
    pid_t *nv = realloc(s->v, nc * sizeof *nv);
    if (!nv) return;
    s->v = nv;
    s->cap = nc;
  }
  s->v[s->n++] = p;
}

static pid_t read_ppid(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  char *close_paren = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
  if (!close_paren) return -1;
  char state;
  int ppid;
  if (sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2) return -1;
  return ppid;
}

/* Adds to `out` every descendant of `self` not yet in it; returns how many were added. */
static size_t scan_descendants(pid_t self, pidset *out) {
  pidset all = {0}, parents = {0};
  DIR *d = opendir("/proc");
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    char *end;
    long p = strtol(e->d_name, &end, 10);
    if (*end || p <= 0) continue;
    pid_t pp = read_ppid((pid_t)p);
    if (pp < 0) continue;
    add(&all, (pid_t)p);
    add(&parents, pp);
  }
  closedir(d);
  size_t added = 0;
  /* Closure over the parent links: at most one pass per tree level. */
  for (int changed = 1; changed;) {
    changed = 0;
    for (size_t i = 0; i < all.n; i++) {
      pid_t p = all.v[i], pp = parents.v[i];
      if (p == self || has(out, p)) continue;
      if (pp == self || has(out, pp)) {
        add(out, p);
        added++;
        changed = 1;
      }
    }
  }
  free(all.v);
  free(parents.v);
  return added;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Freezes, kills and reaps every remaining descendant. Returns how many could not be ended. */
static size_t end_descendants(pid_t self) {
  pidset seen = {0};
  size_t left = 0;
  for (int round = 0; round < CLEANUP_ROUNDS; round++) {
    /* Freeze until a scan finds nothing new: a stopped process cannot fork. */
    for (int pass = 0; pass < 64; pass++) {
      size_t before = seen.n;
      if (scan_descendants(self, &seen) == 0) break;
      for (size_t i = before; i < seen.n; i++) kill(seen.v[i], SIGSTOP);
    }
    for (size_t i = 0; i < seen.n; i++) kill(seen.v[i], SIGKILL);
    /* Killed grandchildren reparent to us (the subreaper): reap until none is left. */
    for (int i = 0; i < 50; i++) {
      int st;
      pid_t r = waitpid(-1, &st, WNOHANG);
      if (r > 0) continue;
      if (r < 0 && errno == ECHILD) {
        free(seen.v);
        return 0;
      }
      sleep_ms(2);
    }
    seen.n = 0;
    left = 1;
  }
  free(seen.v);
  return left;
}

int main(int argc, char **argv) {
  long uid = -1, gid = -1;
  const char *groups_arg = NULL;
  int narrow = 0;
  unsigned long long keep = 0;
  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (i + 1 >= argc) die(125, "option %s needs a value", argv[i]);
    if (strcmp(argv[i], "--uid") == 0) uid = parse_num(argv[++i], "--uid");
    else if (strcmp(argv[i], "--gid") == 0) gid = parse_num(argv[++i], "--gid");
    else if (strcmp(argv[i], "--groups") == 0) groups_arg = argv[++i];
    else if (strcmp(argv[i], "--bounding") == 0) {
      char *end;
      errno = 0;
      keep = strtoull(argv[++i], &end, 16);
      if (errno || *end) die(125, "--bounding: not a hex mask: %s", argv[i]);
      narrow = 1;
    } else die(125, "unknown option %s", argv[i]);
  }
  if (uid < 0 || gid < 0 || !groups_arg) die(125, "usage: hook-exec --uid U --gid G --groups LIST [--bounding HEX] -- COMMAND [ARG...]");
  if (i >= argc) die(125, "no command after --");
  char **cmd = argv + i;

  static gid_t groups[MAX_GROUPS];
  size_t ngroups = 0;
  for (const char *p = groups_arg; *p;) {
    char num[24];
    const char *comma = strchr(p, ',');
    size_t l = comma ? (size_t)(comma - p) : strlen(p);
    if (l == 0 || l >= sizeof num || ngroups == MAX_GROUPS) die(125, "--groups: malformed list %s", groups_arg);
    memcpy(num, p, l);
    num[l] = '\0';
    groups[ngroups++] = (gid_t)parse_num(num, "--groups");
    p = comma ? comma + 1 : p + l;
  }

  /* If the sidecar dies, end the command too (SIGTERM runs the cleanup below). */
  pid_t parent = getppid();
  sigset_t mask, oldmask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, &oldmask);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) die(125, "the sidecar exited before the command started");
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) die(125, "PR_SET_CHILD_SUBREAPER: %s", strerror(errno));

  char **env = read_env();
  pid_t self = getpid();
  pid_t pid = fork();
  if (pid < 0) die(125, "fork: %s", strerror(errno));
  if (pid == 0) child(cmd, env, (uid_t)uid, (gid_t)gid, groups, ngroups, narrow, keep, &oldmask);
  close(FD_ROOT);
  close(FD_CWD);

  int status = 0, done = 0, stopped = 0;
  while (!done && !stopped) {
    siginfo_t si;
    int s = sigwaitinfo(&mask, &si);
    if (s < 0) continue;
    if (s != SIGCHLD) {
      stopped = 1;
      break;
    }
    for (;;) {
      int st;
      pid_t r = waitpid(-1, &st, WNOHANG);
      if (r <= 0) break;
      if (r == pid) {
        status = st;
        done = 1;
      }
    }
  }
  /* Fast path: no child left means no descendant left (every orphan reparents to us). */
  int st;
  pid_t r;
  while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
    if (r == pid) {
      status = st;
      done = 1;
    }
  }
  if (!(r < 0 && errno == ECHILD)) {
    if (end_descendants(self) > 0) {
      static const char msg[] = "hook-exec: some processes the command started could not be ended (is CAP_KILL missing?)\n";
      (void)!write(2, msg, sizeof msg - 1);
    }
  }
  if (stopped && !done) return 128 + SIGKILL;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    /* Report the command's death by signal as ours: the sidecar sees the same signal. */
    signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    prctl(PR_SET_DUMPABLE, 0);
    raise(sig);
    return 128 + sig;
  }
  return 125;
}
