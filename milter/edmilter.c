/*
 * edmilter.c: the daemon. Reads the config, opens the milter socket while
 * still privileged, becomes UserID, loads the ClamAV engine and hands over
 * to libmilter. SIGUSR1 reloads the config and the database as one new
 * snapshot, and so does a change of the database folder, looked at every
 * ClamAVCheckInterval seconds; SIGTERM stops after the messages in flight
 * are answered.
 *
 * Logs start-up, reload and stop at info level; errors at err.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "edmilter.h"
#include "log.h"
#include "mlfi.h"
#include "rules.h"
#include "snap.h"
#include "sock.h"

/* How long a stop waits for messages in flight. */
#define EDM_STOP_WAIT_S 30

static const char *edm_conf_path = EDM_DEFAULT_CONF;
static char edm_conf_abs[PATH_MAX];

/*
 * The config's path made absolute: the daemon runs in / and reads it again
 * at every reload; relative paths in it are taken from its folder.
 */
static int
edm_abs_conf(void)
{
	char cwd[PATH_MAX];
	int n;

	if (edm_conf_path[0] == '/')
		return 0;
	if (getcwd(cwd, sizeof(cwd)) == NULL) {
		fprintf(stderr, "%s: the current folder is unknown: %s\n",
			edm_conf_path, strerror(errno));
		return -1;
	}
	n = snprintf(edm_conf_abs, sizeof(edm_conf_abs), "%s%s%s", cwd,
		     strcmp(cwd, "/") == 0 ? "" : "/", edm_conf_path);
	if (n < 0 || (size_t)n >= sizeof(edm_conf_abs)) {
		fprintf(stderr, "%s: the path is too long\n", edm_conf_path);
		return -1;
	}
	edm_conf_path = edm_conf_abs;
	return 0;
}

static void
edm_usage(void)
{
	fprintf(stderr,
		"usage: edmilter [-fnV] [-c config]\n"
		"  -c FILE  configuration (default %s)\n"
		"  -f       stay in the foreground, log to stderr\n"
		"  -n       check the configuration and exit\n"
		"  -V       print the version and exit\n",
		EDM_DEFAULT_CONF);
	exit(2);
}

static void
edm_print_errors(const struct errlist *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		fprintf(stderr, "%s\n", errs->lines[i]);
}

/*
 * Can UserID reach path with mode (as access(2): R_OK, W_OK, X_OK)? Root
 * checking for another UserID asks from a child that became that user.
 * Returns 0 or an errno value.
 */
static int
edm_access_as(const struct conf *c, const char *path, int mode)
{
	struct passwd *pw;
	pid_t pid;
	int st;

	if (c->user[0] == '\0' || geteuid() != 0 ||
	    (pw = getpwnam(c->user)) == NULL || pw->pw_uid == geteuid())
		return access(path, mode) == 0 ? 0 : errno;
	if ((pid = fork()) < 0)
		return errno;
	if (pid == 0) {
		if (initgroups(pw->pw_name, pw->pw_gid) < 0 ||
		    setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
			_exit(EPERM);
		_exit(access(path, mode) == 0 ? 0 : errno & 0xff);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return errno;
	if (!WIFEXITED(st))
		return EINTR;
	return WEXITSTATUS(st);
}

/* " (as UserID name)" after a refusal when there is a UserID, else "". */
static const char *
edm_as(const struct conf *c, int e, char *buf, size_t len)
{
	if (c->user[0] == '\0' || (e != EACCES && e != EPERM))
		return "";
	snprintf(buf, len, " (as UserID %s)", c->user);
	return buf;
}

/*
 * The folder that would hold a file: where its path puts it, "." if
 * nowhere (no folder named).
 */
static void
edm_dirname(const char *path, char *dir, size_t len)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(dir, len, ".");
	else if (slash == path)
		snprintf(dir, len, "/");
	else
		snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

/* The path of a unix socket, NULL for an inet one. */
static const char *
edm_socket_path(const struct conf *c)
{
	if (strncmp(c->socket, "unix:", 5) == 0)
		return c->socket + 5;
	if (strncmp(c->socket, "local:", 6) == 0)
		return c->socket + 6;
	return NULL;
}

/*
 * Every file of folder dir that the daemon reads (as is_one tells) must be
 * readable as UserID: the folder's own mode says nothing of its files.
 */
static void
edm_check_files(const struct conf *c, const char *dir,
		bool (*is_one)(const char *), const char *key,
		const char *where, struct errlist *errs)
{
	char path[4096], as[300];
	struct dirent *de;
	DIR *dp;
	int e;

	if ((dp = opendir(dir)) == NULL)
		return;
	while ((de = readdir(dp)) != NULL) {
		if (!is_one(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if ((e = edm_access_as(c, path, R_OK)) != 0)
			errlist_add(errs, "%s: %s: %s: %s%s", where, key, path,
				    strerror(e), edm_as(c, e, as, sizeof(as)));
	}
	closedir(dp);
}

/*
 * What only the running daemon would find out: the user to become, the
 * files and folders it opens (read and written as UserID, but the pid
 * file and the socket made before it drops to it), the socket's group.
 */
static void
edm_check_system(const struct conf *c, struct errlist *errs)
{
	char where[300], as[300], dir[4096];
	const char *path;
	struct passwd *pw = NULL;
	struct stat st;
	int e;

	conf_where(c, "UserID", where, sizeof(where));
	if (c->user[0] != '\0' && (pw = getpwnam(c->user)) == NULL)
		errlist_add(errs, "%s: UserID: no such user \"%s\"", where,
			    c->user);
	else if (pw != NULL && pw->pw_uid != getuid() && geteuid() != 0)
		errlist_add(errs,
			    "%s: UserID: only root can become \"%s\" (this "
			    "is uid %ld)",
			    where, c->user, (long)getuid());
	if (c->user[0] == '\0' && getuid() == 0 && !c->allow_root)
		errlist_add(errs,
			    "%s: running as root: set UserID (or "
			    "AllowRoot yes)",
			    c->path);
	conf_where(c, "ClamAVDatabase", where, sizeof(where));
	if (stat(c->clamav_db, &st) < 0)
		errlist_add(errs, "%s: ClamAVDatabase: %s: %s", where,
			    c->clamav_db, strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		errlist_add(errs, "%s: ClamAVDatabase: %s: not a folder", where,
			    c->clamav_db);
	else if ((e = edm_access_as(c, c->clamav_db, R_OK | X_OK)) != 0)
		errlist_add(errs, "%s: ClamAVDatabase: %s: %s%s", where,
			    c->clamav_db, strerror(e),
			    edm_as(c, e, as, sizeof(as)));
	else if (!av_has_db_file(c->clamav_db))
		errlist_add(errs, "%s: ClamAVDatabase: %s: %s", where,
			    c->clamav_db, AV_NO_DB_FILE);
	else
		edm_check_files(c, c->clamav_db, av_is_db_name,
				"ClamAVDatabase", where, errs);
	/* The engine's private folder is made in it at every load. */
	conf_where(c, "TemporaryDirectory", where, sizeof(where));
	if (stat(c->tmpdir, &st) < 0)
		errlist_add(errs, "%s: TemporaryDirectory: %s: %s", where,
			    c->tmpdir, strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		errlist_add(errs, "%s: TemporaryDirectory: %s: not a folder",
			    where, c->tmpdir);
	else if ((e = edm_access_as(c, c->tmpdir, W_OK | X_OK)) != 0)
		errlist_add(errs,
			    "%s: TemporaryDirectory: %s: cannot make a folder "
			    "in it: %s%s",
			    where, c->tmpdir, strerror(e),
			    edm_as(c, e, as, sizeof(as)));
	conf_where(c, "Socket", where, sizeof(where));
	if ((path = edm_socket_path(c)) != NULL) {
		edm_dirname(path, dir, sizeof(dir));
		if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
			errlist_add(errs,
				    "%s: Socket: %s: no such folder "
				    "for the socket",
				    where, dir);
		else if (access(dir, W_OK | X_OK) < 0)
			errlist_add(errs,
				    "%s: Socket: %s: cannot make the socket "
				    "there: %s",
				    where, dir, strerror(errno));
		conf_where(c, "SocketGroup", where, sizeof(where));
		if (c->socket_group[0] != '\0' &&
		    getgrnam(c->socket_group) == NULL)
			errlist_add(errs,
				    "%s: SocketGroup: no such group \"%s\"",
				    where, c->socket_group);
	}
	/* Written before the daemon drops to UserID. */
	conf_where(c, "PidFile", where, sizeof(where));
	if (c->pidfile[0] != '\0') {
		edm_dirname(c->pidfile, dir, sizeof(dir));
		if (stat(c->pidfile, &st) == 0) {
			if (S_ISDIR(st.st_mode))
				errlist_add(errs,
					    "%s: PidFile: %s: a folder, not a "
					    "file",
					    where, c->pidfile);
			else if (access(c->pidfile, W_OK) < 0)
				errlist_add(errs, "%s: PidFile: %s: %s", where,
					    c->pidfile, strerror(errno));
		} else if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
			errlist_add(errs,
				    "%s: PidFile: %s: no such folder for the "
				    "pid file",
				    where, dir);
		} else if (access(dir, W_OK | X_OK) < 0) {
			errlist_add(errs,
				    "%s: PidFile: %s: cannot write the pid "
				    "file there: %s",
				    where, dir, strerror(errno));
		}
	}
	conf_where(c, "PublicSuffixList", where, sizeof(where));
	if (c->auth_checks &&
	    (e = edm_access_as(c, c->public_suffix_list, R_OK)) != 0)
		errlist_add(errs, "%s: PublicSuffixList: %s: %s%s", where,
			    c->public_suffix_list, strerror(e),
			    edm_as(c, e, as, sizeof(as)));
	conf_where(c, "RulesPath", where, sizeof(where));
	if (c->rules_path[0] != '\0' &&
	    (e = edm_access_as(c, c->rules_path, R_OK)) != 0)
		errlist_add(errs, "%s: RulesPath: %s: %s%s", where,
			    c->rules_path, strerror(e),
			    edm_as(c, e, as, sizeof(as)));
	else if (c->rules_path[0] != '\0' && stat(c->rules_path, &st) == 0 &&
		 S_ISDIR(st.st_mode))
		edm_check_files(c, c->rules_path, rules_is_file_name,
				"RulesPath", where, errs);
}

/* -n: every error as file:line: message, or "configuration OK". */
static int
edm_check(const char *path)
{
	struct errlist errs = {0};
	struct conf *c;

	if (conf_load(path, &c, &errs) == 0) {
		struct rules *r = NULL;

		edm_check_system(c, &errs);
		if (c->rules_path[0] != '\0' &&
		    access(c->rules_path, R_OK) == 0 &&
		    rules_load(c->rules_path, &r, &errs) == 0)
			rules_free(r);
		conf_free(c);
	}
	if (errs.n > 0) {
		edm_print_errors(&errs);
		errlist_free(&errs);
		return 1;
	}
	printf("configuration OK\n");
	return 0;
}

/* Socket mode and group, for a unix socket. */
static int
edm_socket_perms(const struct conf *c)
{
	const char *path = edm_socket_path(c);
	struct group *g;

	if (path == NULL)
		return 0;
	if (chmod(path, (mode_t)c->socket_mode) < 0) {
		log_msg(LOG_ERR, "%s: chmod: %s", path, strerror(errno));
		return -1;
	}
	if (c->socket_group[0] == '\0')
		return 0;
	if ((g = getgrnam(c->socket_group)) == NULL) {
		log_msg(LOG_ERR, "SocketGroup %s: no such group",
			c->socket_group);
		return -1;
	}
	if (chown(path, (uid_t)-1, g->gr_gid) < 0) {
		log_msg(LOG_ERR, "%s: chown: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* A unix socket's file goes with the daemon (if it still may). */

/* The socket file this process made: removed only if still the same. */
static dev_t edm_sock_dev;
static ino_t edm_sock_ino;

static void
edm_socket_unlink(const struct conf *c)
{
	const char *path = edm_socket_path(c);
	struct stat st;

	if (path != NULL && stat(path, &st) == 0 && st.st_dev == edm_sock_dev &&
	    st.st_ino == edm_sock_ino)
		unlink(path);
}

static void
edm_socket_mark(const struct conf *c)
{
	const char *path = edm_socket_path(c);
	struct stat st;

	if (path != NULL && stat(path, &st) == 0) {
		edm_sock_dev = st.st_dev;
		edm_sock_ino = st.st_ino;
	}
}

/*
 * Is a unix socket's path answered by a running daemon? libmilter removes
 * the file before it binds: a second start would take the socket from
 * the first, which would then serve nobody.
 */
static bool
edm_socket_in_use(const struct conf *c)
{
	const char *path = edm_socket_path(c);
	struct sockaddr_un sun;
	bool used;
	int fd;

	if (path == NULL || strlen(path) >= sizeof(sun.sun_path))
		return false;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
		return false;
	used = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	close(fd);
	return used;
}

/* Only the pid file that names this process is removed at stop. */
static void
edm_pid_unlink(const char *path)
{
	FILE *fp;
	long pid = 0;

	if (path[0] == '\0' || (fp = fopen(path, "r")) == NULL)
		return;
	if (fscanf(fp, "%ld", &pid) != 1)
		pid = 0;
	fclose(fp);
	if (pid == (long)getpid())
		unlink(path);
}

static int
edm_drop_privileges(const struct conf *c)
{
	struct passwd *pw;

	if (c->user[0] == '\0') {
		if (getuid() == 0 && !c->allow_root) {
			log_msg(LOG_ERR, "refusing to run as root: set UserID "
					 "(or AllowRoot yes)");
			return -1;
		}
		return 0;
	}
	if ((pw = getpwnam(c->user)) == NULL) {
		log_msg(LOG_ERR, "UserID %s: no such user", c->user);
		return -1;
	}
	if (getuid() == pw->pw_uid)
		return 0;
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		log_msg(LOG_ERR, "becoming %s: %s", c->user, strerror(errno));
		return -1;
	}
	return 0;
}

static bool
edm_write_pid(const char *path, pid_t pid)
{
	FILE *fp;

	if (path[0] == '\0')
		return false;
	if ((fp = fopen(path, "w")) == NULL) {
		log_msg(LOG_ERR, "%s: cannot write the pid: %s", path,
			strerror(errno));
		return false;
	}
	fprintf(fp, "%ld\n", (long)pid);
	if (fclose(fp) != 0) {
		log_msg(LOG_ERR, "%s: cannot write the pid: %s", path,
			strerror(errno));
		unlink(path);
		return false;
	}
	return true;
}

/*
 * The pipe from the daemon to the process that started it, until the
 * daemon serves: its stderr, and then one NUL byte for "serving".
 */
static int edm_ready_fd = -1;

/* The daemon being started, and whether its start was called off. */
static volatile pid_t edm_starting_pid;
static volatile sig_atomic_t edm_start_called_off;

static void
edm_start_signal(int sig)
{
	(void)sig;
	edm_start_called_off = 1;
	if (edm_starting_pid > 0)
		kill(edm_starting_pid, SIGTERM);
}

/*
 * The process started waits for the daemon: it passes on what the daemon
 * writes to stderr (its log with Syslog no), writes the pid file once the
 * daemon serves and exits 0; if the daemon ends first, the start failed:
 * it removes the socket (root still) and exits with the daemon's status.
 */
static void
edm_wait_daemon(const struct conf *c, int fd, pid_t pid)
{
	char buf[4096], *nul;
	struct sigaction sa;
	bool no_pid = false;
	ssize_t n;
	int st, rc = 1;

	/*
	 * Interrupted, the start is called off: the daemon is told to stop
	 * and waited for, so that "failed" never leaves one running.
	 */
	edm_starting_pid = pid;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = edm_start_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigemptyset(&sa.sa_mask);
	pthread_sigmask(SIG_SETMASK, &sa.sa_mask, NULL);
	for (;;) {
		if ((n = read(fd, buf, sizeof(buf))) < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		nul = memchr(buf, '\0', (size_t)n);
		n = write(2, buf,
			  nul != NULL ? (size_t)(nul - buf) : (size_t)n);
		if (nul == NULL || edm_start_called_off)
			continue;
		if (c->pidfile[0] == '\0' || edm_write_pid(c->pidfile, pid))
			_exit(0);
		/* Started but not findable: called off too. */
		kill(pid, SIGTERM);
		edm_start_called_off = 1;
		no_pid = true;
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
		rc = WEXITSTATUS(st);
	edm_socket_unlink(c);
	fprintf(stderr, "%s: the daemon %s%s\n", EDM_NAME,
		no_pid		       ? "is stopped: no pid file"
		: edm_start_called_off ? "is stopped: the start was interrupted"
				       : "ended while starting",
		c->syslog ? ": its log says why" : "");
	_exit(rc);
}

static int
edm_daemonize(const struct conf *c)
{
	int p[2], fd;
	pid_t pid;

	if (pipe(p) < 0)
		return -1;
	fflush(NULL);
	if ((pid = fork()) < 0)
		return -1;
	if (pid > 0) {
		close(p[1]);
		edm_wait_daemon(c, p[0], pid);
	}
	close(p[0]);
	/* A write to a parent gone must not end the start. */
	signal(SIGPIPE, SIG_IGN);
	setsid();
	if (chdir("/") < 0)
		return -1;
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, 0), dup2(fd, 1);
		if (fd > 2)
			close(fd);
	}
	dup2(p[1], 2);
	edm_ready_fd = p[1];
	return 0;
}

/* The daemon serves: its starter may go, stderr is no longer read. */
static void
edm_serving(void)
{
	ssize_t n;
	int fd;

	if (edm_ready_fd < 0)
		return;
	n = write(edm_ready_fd, "", 1);
	(void)n;
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, 2);
		if (fd != 2)
			close(fd);
	}
	if (edm_ready_fd != 2)
		close(edm_ready_fd);
	edm_ready_fd = -1;
}

/* Turns new connections away and waits for the messages in flight. */
static void
edm_drain(void)
{
	int i;

	mlfi_drain();
	log_msg(LOG_INFO, "stopping: %d messages in flight", mlfi_in_flight());
	for (i = 0; i < EDM_STOP_WAIT_S * 10 && mlfi_in_flight() > 0; i++)
		usleep(100000);
	if (mlfi_in_flight() > 0)
		log_msg(LOG_WARNING,
			"stopping with %d messages unanswered (the MTA "
			"tempfails them)",
			mlfi_in_flight());
}

/*
 * The connections the MTA keeps open between messages would outlive
 * libmilter's loop, holding their snapshot (and its engine and temporary
 * folder) to the end. Once the messages in flight are answered they are
 * shut down (the MTA sees the milter gone, as at any stop) while the loop
 * still runs, which ends their sessions and frees their states.
 */
static void
edm_close_idle(void)
{
	int i, n = mlfi_connections();

	if (n == 0)
		return;
	log_msg(LOG_INFO, "stopping: closing %d idle connections", n);
	sock_shutdown_all();
	for (i = 0; i < EDM_STOP_WAIT_S * 10 && mlfi_connections() > 0; i++)
		usleep(100000);
	if (mlfi_connections() > 0)
		log_msg(LOG_WARNING, "stopping with %d connections still open",
			mlfi_connections());
}

/*
 * The database folder as the last load found it: the reload thread looks
 * at it every ClamAVCheckInterval seconds, as clamd's SelfCheck does. Only
 * the reload thread touches it once serving.
 */
static struct av_watch *edm_watch;

/*
 * Builds a new snapshot (config, rules, a new engine) while scans go on
 * with the running one, and swaps it in. A bad config keeps the running
 * snapshot; a database that fails to load keeps the running engine.
 */
static void
edm_reload(void)
{
	struct snap *cur = snap_get(), *s = NULL;
	struct errlist errs = {0};
	struct av_watch *w;

	log_msg(LOG_INFO, "reloading %s", edm_conf_path);

	/* Noted before the load: a change while it runs is seen next time. */
	w = av_watch_new(cur != NULL ? cur->conf->clamav_db
				     : av_watch_dir(edm_watch));
	if (snap_build(edm_conf_path, cur ? cur->av : NULL, &s, &errs) == 0 &&
	    !conf_any_set(s->conf)) {
		/* An empty file is more likely cut short than meant. */
		errlist_add(&errs,
			    "%s: no key set: an empty configuration is "
			    "not taken at reload",
			    edm_conf_path);
		snap_put(s);
		s = NULL;
	}
	if (s == NULL) {
		/* The database is tried again with the next good config. */
		av_watch_free(w);
		for (size_t i = 0; i < errs.n; i++)
			log_msg(LOG_ERR, "%s", errs.lines[i]);
		log_msg(LOG_ERR, "reload failed: keeping the running "
				 "configuration");
		errlist_free(&errs);
		snap_put(cur);
		return;
	}

	if (strcmp(av_watch_dir(w), s->conf->clamav_db) != 0) {
		av_watch_free(w);
		w = av_watch_new(s->conf->clamav_db);
	}
	av_watch_free(edm_watch);
	edm_watch = w;
	if (s->av == NULL)
		log_msg(LOG_ERR, "reloaded: %s; still no database",
			s->av_error);
	else if (cur != NULL && s->av == cur->av)
		log_msg(LOG_ERR,
			"reloaded the configuration; database reload failed: "
			"the running database kept (%u signatures)",
			av_signatures(s->av));
	else
		log_msg(LOG_INFO, "reloaded: %u signatures",
			av_signatures(s->av));
	snap_install(s);
	errlist_free(&errs);
	snap_put(cur);
}

/* ClamAVCheckInterval of the running config, in seconds; 0 is off. */
static long
edm_check_interval(void)
{
	struct snap *s = snap_get();
	long every = s != NULL ? s->conf->clamav_check_interval : 0;

	snap_put(s);
	return every;
}

/*
 * Reloads run in a thread of their own (loading a database takes
 * seconds), so that the main thread is always waiting for signals and
 * scans never wait on a load. The thread wakes for SIGUSR1, and every
 * ClamAVCheckInterval seconds to look at the database folder.
 */
static pthread_mutex_t edm_reload_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t edm_reload_cv;
static int edm_reload_asked;
static bool edm_stopping; /* the thread ends at its next wait */

/*
 * Seconds between looks at whether the daemon went idle: then the
 * allocator's free pages go back to the system (glibc keeps what a flood
 * freed in its per-thread arenas for good, and the resident size after a
 * peak would stay the peak's). Done here, off the message path, with no
 * message in flight.
 */
#define EDM_TRIM_S 2

static bool
edm_ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec ||
	       (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void *
edm_reload_thread(void *arg)
{
	struct timespec due, tick;
	long every;
	int asked, rc;
	bool last;

	(void)arg;
	for (;;) {
		every = edm_check_interval();
		clock_gettime(CLOCK_MONOTONIC, &due);
		due.tv_sec += every;
		rc = 0;
		pthread_mutex_lock(&edm_reload_mu);
		while (!edm_reload_asked && !edm_stopping && rc != ETIMEDOUT) {
			clock_gettime(CLOCK_MONOTONIC, &tick);
			tick.tv_sec += EDM_TRIM_S;
			last = every > 0 && !edm_ts_before(&tick, &due);
			if (last)
				tick = due;
			rc = pthread_cond_timedwait(&edm_reload_cv,
						    &edm_reload_mu, &tick);
			/* Every timer, the database check's too: with a
			 * ClamAVCheckInterval under EDM_TRIM_S, it is the
			 * only one that fires. */
			if (rc == ETIMEDOUT && mlfi_idle_again()) {
				pthread_mutex_unlock(&edm_reload_mu);
				malloc_trim(0);
				log_msg(LOG_DEBUG, "idle: free memory given "
						   "back to the system");
				pthread_mutex_lock(&edm_reload_mu);
			}
			if (rc == ETIMEDOUT && !last)
				rc = 0;
		}
		asked = edm_reload_asked;
		edm_reload_asked = 0;
		if (edm_stopping) {
			pthread_mutex_unlock(&edm_reload_mu);
			break;
		}
		pthread_mutex_unlock(&edm_reload_mu);
		if (asked) {
			edm_reload();
		} else if (av_watch_changed(edm_watch)) {
			log_msg(LOG_INFO, "%s: database changed, reloading",
				av_watch_dir(edm_watch));
			edm_reload();
		}
	}
	return NULL;
}

static pthread_t edm_main_thread;
static int edm_smfi_rc;

/* libmilter's loop, off the main thread; SIGUSR2 tells main it ended. */
static void *
edm_smfi_thread(void *arg)
{
	(void)arg;
	edm_smfi_rc = smfi_main();
	pthread_kill(edm_main_thread, SIGUSR2);
	return NULL;
}

/*
 * The main thread waits for SIGTERM, SIGUSR1 and SIGUSR2. On Linux a
 * signal sent to the process goes to its main thread first when that
 * thread waits for it, so SIGTERM comes here and not to libmilter's own
 * signal thread, which would close every connection at once: here new
 * connections are turned away (the MTA tempfails them), the messages in
 * flight are answered, and only then is libmilter stopped. SIGHUP and
 * SIGINT stay libmilter's (stop, abort).
 */
static void
edm_serve(void)
{
	pthread_t smfi, reload;
	pthread_condattr_t ca;
	sigset_t set;
	int sig;

	/* The interval is counted on a clock that setting the time leaves. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&edm_reload_cv, &ca);
	pthread_condattr_destroy(&ca);

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	edm_main_thread = pthread_self();
	if (pthread_create(&reload, NULL, edm_reload_thread, NULL) != 0 ||
	    pthread_create(&smfi, NULL, edm_smfi_thread, NULL) != 0) {
		log_msg(LOG_ERR, "cannot start threads");
		edm_smfi_rc = MI_FAILURE;
		return;
	}
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGUSR1) {
			pthread_mutex_lock(&edm_reload_mu);
			edm_reload_asked = 1;
			pthread_cond_signal(&edm_reload_cv);
			pthread_mutex_unlock(&edm_reload_mu);
		} else if (sig == SIGTERM) {
			edm_drain();
			edm_close_idle();
			smfi_stop();
			break;
		} else {
			break; /* libmilter stopped by itself */
		}
	}
	pthread_join(smfi, NULL);

	/* A reload under way ends before the snapshot is dropped. */
	pthread_mutex_lock(&edm_reload_mu);
	edm_stopping = true;
	pthread_cond_broadcast(&edm_reload_cv);
	pthread_mutex_unlock(&edm_reload_mu);
	pthread_join(reload, NULL);
}

int
main(int argc, char **argv)
{
	struct errlist errs = {0};
	struct conf *c;
	struct snap *s;
	sigset_t set;
	int ch, foreground = 0, check = 0, rc;
	bool sock_made = false, pid_made = false;
	char err[EDM_ERRLEN];

	/*
	 * Threads inherit this mask: only the waiting threads take these.
	 * Set first, so that a signal during start-up waits instead of
	 * killing the process.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	while ((ch = getopt(argc, argv, "c:fnV")) != -1)
		switch (ch) {
		case 'c':
			edm_conf_path = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 'n':
			check = 1;
			break;
		case 'V':
			printf("%s %s\n", EDM_NAME, EDM_VERSION);
			return 0;
		default:
			edm_usage();
		}
	if (optind != argc)
		edm_usage();
	if (edm_abs_conf() < 0)
		return 1;
	if (check)
		return edm_check(edm_conf_path);

	if (conf_load(edm_conf_path, &c, &errs) < 0) {
		edm_print_errors(&errs);
		errlist_free(&errs);
		return 1;
	}
	log_init(EDM_NAME, c->syslog_facility, foreground || !c->syslog);
	if (c->log_debug)
		log_set_level(LOG_DEBUG);
	if (av_global_init(err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "%s", err);
		goto fail;
	}

	/* The socket is opened while still privileged. */
	if (edm_socket_in_use(c)) {
		log_msg(LOG_ERR, "%s: in use: another daemon serves it",
			c->socket);
		goto fail;
	}
	errno = 0;
	if (smfi_register(mlfi_desc) != MI_SUCCESS ||
	    smfi_setconn(c->socket) != MI_SUCCESS ||
	    smfi_opensocket(1) != MI_SUCCESS) {
		/* libmilter says why only to syslog; errno is bind's. */
		log_msg(LOG_ERR, "%s: cannot open the milter socket%s%s%s",
			c->socket, errno ? " (" : "",
			errno ? strerror(errno) : "", errno ? ")" : "");
		goto fail;
	}
	sock_made = true;
	edm_socket_mark(c);
	smfi_settimeout((int)c->milter_timeout);
	if (edm_socket_perms(c) < 0)
		goto fail;
	/* Without -f, the process started writes the pid file. */
	if (!foreground && edm_daemonize(c) < 0) {
		log_msg(LOG_ERR, "cannot become a daemon: %s", strerror(errno));
		goto fail;
	}
	if (foreground)
		pid_made = edm_write_pid(c->pidfile, getpid());
	if (edm_drop_privileges(c) < 0)
		goto fail;

	edm_watch = av_watch_new(c->clamav_db);
	if (snap_build(edm_conf_path, NULL, &s, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			log_msg(LOG_ERR, "%s", errs.lines[i]);
		goto fail;
	}
	if (s->av == NULL)
		log_msg(LOG_ERR, "%s; every message gets OnNoEngine (%s)",
			s->av_error, verdict_action_name(c->on_no_engine));
	snap_install(s);
	log_msg(LOG_INFO, "%s %s starting: socket %s, %u signatures", EDM_NAME,
		EDM_VERSION, c->socket, av_signatures(s->av));
	if (!foreground && !c->syslog)
		log_msg(LOG_WARNING, "Syslog no without -f: nothing is logged "
				     "from now on");
	edm_serving();
	edm_serve();
	rc = edm_smfi_rc;

	edm_pid_unlink(c->pidfile);
	edm_socket_unlink(c);
	/* The engine dies with its last user, its temporary folder with it. */
	snap_install(NULL);
	/* A connection still open may still be scanning in its folder. */
	if (mlfi_connections() == 0)
		av_exit();
	av_watch_free(edm_watch);
	log_msg(LOG_INFO, "stopped");
	conf_free(c);
	return rc == MI_SUCCESS ? 0 : 1;
fail:
	/*
	 * XXX a pid file or a socket in a folder that only root may write
	 * stays behind when the start fails after the drop to UserID with -f
	 * (without -f the process started, still root, removes the socket).
	 */
	if (pid_made)
		unlink(c->pidfile);
	if (sock_made)
		edm_socket_unlink(c);
	av_watch_free(edm_watch);
	errlist_free(&errs);
	conf_free(c);
	return 1;
}
