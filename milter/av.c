/*
 * av.c: libclamav in-process. An engine is loaded and compiled once and
 * then scanned by any number of threads; the last reference frees it, so a
 * reload can put a new engine in place while scans on the old one finish.
 * Messages are scanned from memory, every parser on; libclamav's own
 * temporary files go into a private directory that dies with the engine.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <clamav.h>

#include "av.h"
#include "log.h"
#include "util.h"
#include "verdict.h"

/* Room kept free in the temporary directory beyond 4 times the message. */
#define AV_TMP_SLACK (16ULL * 1024 * 1024)

struct av_engine {
	struct cl_engine *engine;
	atomic_int refs;
	unsigned sigs;
	unsigned long long max_filesize; /* ClamAVMaxFileSize */
	bool rescan;			 /* past a limit; clean cache off */
	char tmpdir[4096];
	struct av_engine *next, *prev; /* every engine alive */
};

/*
 * The engines alive, for av_exit: a connection the MTA keeps open at stop
 * keeps its engine (libmilter never closes it), whose folder must go too.
 */
static pthread_mutex_t av_live_mu = PTHREAD_MUTEX_INITIALIZER;
static struct av_engine *av_live;

static void
av_live_add(struct av_engine *e)
{
	pthread_mutex_lock(&av_live_mu);
	e->next = av_live;
	if (av_live != NULL)
		av_live->prev = e;
	av_live = e;
	pthread_mutex_unlock(&av_live_mu);
}

static void
av_live_del(struct av_engine *e)
{
	pthread_mutex_lock(&av_live_mu);
	if (e->prev != NULL)
		e->prev->next = e->next;
	else if (av_live == e)
		av_live = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	pthread_mutex_unlock(&av_live_mu);
}

/*
 * libclamav's own messages, which it would write to stderr (closed in a
 * daemon). At a load they say which file and line of the database is
 * wrong: errors and warnings go to the log. During a scan (context set)
 * they carry no queue id and mail can cause many: debug level only.
 */
static void
av_clamav_msg(enum cl_msg sev, const char *full, const char *msg, void *ctx)
{
	char raw[600], line[600];
	size_t n;

	(void)full;
	if (sev != CL_MSG_ERROR && sev != CL_MSG_WARN)
		return;
	snprintf(raw, sizeof(raw), "%s", msg);
	n = strlen(raw);
	while (n > 0 &&
	       (raw[n - 1] == '\n' || raw[n - 1] == '\r' || raw[n - 1] == ' '))
		raw[--n] = '\0';
	util_safe(line, sizeof(line), raw, false);
	if (ctx != NULL)
		log_msg(LOG_DEBUG, "libclamav: %s", line);
	else
		log_msg(sev == CL_MSG_ERROR ? LOG_ERR : LOG_WARNING,
			"libclamav: %s", line);
}

int
av_global_init(char *err, size_t errlen)
{
	cl_error_t rc = cl_init(CL_INIT_DEFAULT);

	cl_set_clcb_msg(av_clamav_msg);
	if (rc != CL_SUCCESS) {
		snprintf(err, errlen, "libclamav: init: %s", cl_strerror(rc));
		return -1;
	}
	return 0;
}

static int
av_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb, (void)flag, (void)f;
	return remove(path) < 0 ? 0 : 0;
}

static void
av_destroy(struct av_engine *e)
{
	av_live_del(e);
	if (e->engine != NULL)
		cl_engine_free(e->engine);
	if (e->tmpdir[0] != '\0')
		nftw(e->tmpdir, av_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(e);
}

/* Sets the configured limits; they cannot change after compile. */
static int
av_limits(struct cl_engine *eng, const struct conf *c, char *err, size_t errlen)
{
	const struct {
		enum cl_engine_field f;
		long long v;
		const char *name;
	} lim[] = {
	    {CL_ENGINE_MAX_SCANSIZE, c->clamav_max_scansize,
	     "ClamAVMaxScanSize"},
	    {CL_ENGINE_MAX_FILESIZE, c->clamav_max_filesize,
	     "ClamAVMaxFileSize"},
	    {CL_ENGINE_MAX_RECURSION, c->clamav_max_recursion,
	     "ClamAVMaxRecursion"},
	    {CL_ENGINE_MAX_FILES, c->clamav_max_files, "ClamAVMaxFiles"},
	    {CL_ENGINE_MAX_SCANTIME, c->clamav_max_scantime,
	     "ClamAVMaxScanTime"},
	};
	cl_error_t rc;

	for (size_t i = 0; i < sizeof(lim) / sizeof(*lim); i++)
		if ((rc = cl_engine_set_num(eng, lim[i].f, lim[i].v)) !=
		    CL_SUCCESS) {
			snprintf(err, errlen, "libclamav: %s: %s", lim[i].name,
				 cl_strerror(rc));
			return -1;
		}
	return 0;
}

int
av_load(const struct conf *c, struct av_engine **out, char *err, size_t errlen)
{
	struct av_engine *e = xcalloc(1, sizeof(*e));
	unsigned sigs = 0;
	cl_error_t rc;

	*out = NULL;
	atomic_init(&e->refs, 1);
	snprintf(e->tmpdir, sizeof(e->tmpdir), "%s/edmilter-clamav.XXXXXX",
		 c->tmpdir);
	if (mkdtemp(e->tmpdir) == NULL) {
		snprintf(err, errlen,
			 "%s: cannot make a temporary directory: %s", c->tmpdir,
			 strerror(errno));
		e->tmpdir[0] = '\0';
		goto fail;
	}
	if ((e->engine = cl_engine_new()) == NULL) {
		snprintf(err, errlen, "libclamav: cannot create an engine");
		goto fail;
	}
	/*
	 * The second scan past a limit (av_scan) has the limit silent: it
	 * ends clean, and libclamav's cache of clean files would then
	 * answer the same bytes, or the same attachment in another
	 * message, clean from then on, the limit never seen again. So the
	 * cache is off where that scan runs: where OnScanLimit delivers.
	 * Elsewhere the limit's verdict stands and no second scan is
	 * needed.
	 */
	e->rescan = verdict_delivers(c->on_scan_limit);
	if ((e->rescan && cl_engine_set_num(e->engine, CL_ENGINE_DISABLE_CACHE,
					    1) != CL_SUCCESS) ||
	    cl_engine_set_str(e->engine, CL_ENGINE_TMPDIR, e->tmpdir) !=
		CL_SUCCESS ||
	    av_limits(e->engine, c, err, errlen) < 0)
		goto fail_set;
	rc = cl_load(c->clamav_db, e->engine, &sigs, CL_DB_STDOPT);
	if (rc != CL_SUCCESS) {
		if (!av_has_db_file(c->clamav_db))
			snprintf(err, errlen, "%s: %s", c->clamav_db,
				 AV_NO_DB_FILE);
		else
			snprintf(err, errlen,
				 "%s: cannot load the database: %s",
				 c->clamav_db, cl_strerror(rc));
		goto fail;
	}
	if (sigs == 0) {
		snprintf(err, errlen, "%s: the database holds no signature",
			 c->clamav_db);
		goto fail;
	}
	if ((rc = cl_engine_compile(e->engine)) != CL_SUCCESS) {
		snprintf(err, errlen, "%s: cannot compile the database: %s",
			 c->clamav_db, cl_strerror(rc));
		goto fail;
	}
	e->sigs = sigs;
	e->max_filesize = (unsigned long long)c->clamav_max_filesize;
	av_live_add(e);
	*out = e;
	return 0;
fail_set:
	if (err[0] == '\0')
		snprintf(err, errlen, "libclamav: cannot set the engine up");
fail:
	av_destroy(e);
	return -1;
}

struct av_engine *
av_ref(struct av_engine *e)
{
	if (e != NULL)
		atomic_fetch_add(&e->refs, 1);
	return e;
}

void
av_unref(struct av_engine *e)
{
	if (e != NULL && atomic_fetch_sub(&e->refs, 1) == 1)
		av_destroy(e);
}

unsigned
av_signatures(const struct av_engine *e)
{
	return e ? e->sigs : 0;
}

const char *
av_status_name(enum av_status s)
{
	return s == AV_CLEAN	  ? "clean"
	       : s == AV_INFECTED ? "infected"
				  : "error";
}

/*
 * libclamav unpacks into its temporary directory, and when it cannot
 * write there it reports the message clean: check first that the
 * directory is there (make it again if it went) and has room for the
 * message several times over.
 */
static int
av_tmpdir_ok(struct av_engine *e, size_t len, char *err, size_t errlen)
{
	struct statvfs vfs;
	unsigned long long need = (unsigned long long)len * 4 + AV_TMP_SLACK;

	if (access(e->tmpdir, W_OK | X_OK) < 0 &&
	    (errno != ENOENT || mkdir(e->tmpdir, 0700) < 0)) {
		snprintf(err, errlen, "temporary directory %.300s: %s",
			 e->tmpdir, strerror(errno));
		return -1;
	}
	if (statvfs(e->tmpdir, &vfs) == 0 &&
	    (unsigned long long)vfs.f_bavail * vfs.f_frsize < need) {
		snprintf(
		    err, errlen,
		    "temporary directory %.300s: less than %llu bytes free",
		    e->tmpdir, need);
		return -1;
	}
	return 0;
}

void
av_scan(struct av_engine *e, const char *p, size_t len, struct av_result *r)
{
	struct cl_scan_options opts;
	const char *name = NULL;
	unsigned long scanned = 0;
	uint64_t t0 = util_now_ms();
	cl_fmap_t *map;
	cl_error_t rc;

	memset(r, 0, sizeof(*r));
	if (e == NULL) {
		r->status = AV_ERROR;
		r->failure = AVF_NO_ENGINE;
		snprintf(r->error, sizeof(r->error),
			 "no virus database loaded");
		return;
	}
	if (av_tmpdir_ok(e, len, r->error, sizeof(r->error)) < 0) {
		r->status = AV_ERROR;
		r->failure = AVF_ERROR;
		return;
	}
	/*
	 * libclamav answers a message over its file size limit with a
	 * detection that has no name: said here as the limit it is.
	 */
	if ((unsigned long long)len > e->max_filesize) {
		r->status = AV_ERROR;
		r->failure = AVF_LIMIT;
		snprintf(r->error, sizeof(r->error),
			 "scan limit exceeded (message of %zu bytes over "
			 "ClamAVMaxFileSize)",
			 len);
		return;
	}
	if ((map = cl_fmap_open_memory(p, len)) == NULL) {
		r->status = AV_ERROR;
		r->failure = AVF_ERROR;
		snprintf(r->error, sizeof(r->error), "cannot map the message");
		return;
	}

	/* Every parser on: a zeroed options struct finds nothing. */
	memset(&opts, 0, sizeof(opts));
	opts.parse = ~0u;
	opts.general = CL_SCAN_GENERAL_HEURISTICS;
	opts.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX;

	/* r is the context libclamav's messages during the scan come with. */
	rc = cl_scanmap_callback(map, NULL, &name, &scanned, e->engine, &opts,
				 r);
	/*
	 * A limit reported as a heuristic ends the scan there, before the
	 * signatures had their say: where OnScanLimit lets such mail
	 * through, scan again without it, so that a virus past a limit is
	 * still found (the limit itself stays unchecked). Not after the
	 * time limit: a second scan would take as long again.
	 */
	if (e->rescan && rc == CL_VIRUS && name != NULL &&
	    strncmp(name, "Heuristics.Limits.", 18) == 0 &&
	    strstr(name, "MaxScanTime") == NULL) {
		const char *limit = name, *found = NULL;

		opts.heuristic = 0;
		scanned = 0;
		if (cl_scanmap_callback(map, NULL, &found, &scanned, e->engine,
					&opts, r) == CL_VIRUS &&
		    found != NULL &&
		    strncmp(found, "Heuristics.Limits.", 18) != 0)
			name = found;
		else
			name = limit;
	}
	cl_fmap_close(map);
	r->ms = (unsigned)(util_now_ms() - t0);
	switch (rc) {
	case CL_CLEAN:
		r->status = AV_CLEAN;
		break;
	case CL_VIRUS:
		/* A limit hit shows as a heuristic "virus": not checked. */
		if (name != NULL &&
		    strncmp(name, "Heuristics.Limits.", 18) == 0) {
			r->status = AV_ERROR;
			r->failure = strstr(name, "MaxScanTime") != NULL
					 ? AVF_TIMEOUT
					 : AVF_LIMIT;
			snprintf(r->error, sizeof(r->error),
				 "scan limit exceeded (%s)", name);
			break;
		}
		/* Any other detection without a name is a limit too. */
		if (name == NULL) {
			r->status = AV_ERROR;
			r->failure = AVF_LIMIT;
			snprintf(r->error, sizeof(r->error),
				 "scan limit exceeded (a detection without a "
				 "name)");
			break;
		}
		r->status = AV_INFECTED;
		util_safe(r->name, sizeof(r->name), name, true);
		break;
	case CL_ETIMEOUT:
		r->status = AV_ERROR;
		r->failure = AVF_TIMEOUT;
		snprintf(r->error, sizeof(r->error),
			 "scan timed out (ClamAVMaxScanTime)");
		break;
	case CL_EMAXREC:
	case CL_EMAXSIZE:
	case CL_EMAXFILES:
		r->status = AV_ERROR;
		r->failure = AVF_LIMIT;
		snprintf(r->error, sizeof(r->error), "scan limit exceeded (%s)",
			 cl_strerror(rc));
		break;
	default:
		r->status = AV_ERROR;
		r->failure = AVF_ERROR;
		snprintf(r->error, sizeof(r->error), "scan failed: %s",
			 cl_strerror(rc));
		break;
	}
}

struct av_watch {
	struct cl_stat st;
	bool st_ok; /* st holds the folder's state */
	uint64_t print;
	char dir[4096];
};

/* FNV-1a over n bytes, continuing from h. */
static uint64_t
av_fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

bool
av_is_db_name(const char *name)
{
	/* The extensions libclamav loads from a database folder. */
	static const char *const ext[] = {
	    ".cvd", ".cld",  ".cud", ".ndb", ".ndu",  ".hdb", ".hdu", ".hsb",
	    ".hsu", ".mdb",  ".mdu", ".msb", ".msu",  ".ldb", ".ldu", ".db",
	    ".yar", ".yara", ".imp", ".ign", ".ign2", ".fp",  ".sfp", ".cbc",
	    ".cdb", ".crb",  ".idb", ".ftm", ".pdb",  ".gdb", ".wdb", ".info",
	    ".cat", ".sdb",  ".zmd", ".rmd", ".pwdb", ".cfg"};
	const char *dot = strrchr(name, '.');

	for (size_t i = 0; dot && i < sizeof(ext) / sizeof(*ext); i++)
		if (strcmp(dot, ext[i]) == 0)
			return true;
	return false;
}

bool
av_has_db_file(const char *dir)
{
	struct dirent *d;
	bool found = false;
	DIR *dp;

	if ((dp = opendir(dir)) == NULL)
		return true; /* cl_load says why */
	while (!found && (d = readdir(dp)) != NULL)
		found = av_is_db_name(d->d_name);
	closedir(dp);
	return found;
}

/*
 * A fingerprint of every database file in dir: name, inode, size and times
 * to the nanosecond, summed so that the order of readdir does not count.
 * It sees what cl_statchkdir does not: a file removed, and a file
 * rewritten in place within the second of the last look.
 */
static uint64_t
av_watch_print(const char *dir)
{
	char path[4096 + 256];
	struct dirent *d;
	struct stat sb;
	uint64_t sum = 0, n = 0, h;
	DIR *dd;

	if ((dd = opendir(dir)) == NULL)
		return 0;
	while ((d = readdir(dd)) != NULL) {
		/* freshclam.dat and the like change without a new database. */
		if (d->d_name[0] == '.' || !av_is_db_name(d->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
			continue;
		h = av_fnv(14695981039346656037ULL, d->d_name,
			   strlen(d->d_name) + 1);
		h = av_fnv(h, &sb.st_ino, sizeof(sb.st_ino));
		h = av_fnv(h, &sb.st_size, sizeof(sb.st_size));
		h = av_fnv(h, &sb.st_mtim, sizeof(sb.st_mtim));
		h = av_fnv(h, &sb.st_ctim, sizeof(sb.st_ctim));
		sum += h;
		n++;
	}
	closedir(dd);
	return av_fnv(sum, &n, sizeof(n));
}

struct av_watch *
av_watch_new(const char *dir)
{
	struct av_watch *w = xcalloc(1, sizeof(*w));

	snprintf(w->dir, sizeof(w->dir), "%s", dir);
	/* libclamav complains on stderr of a folder it cannot open. */
	if (access(dir, R_OK | X_OK) == 0 &&
	    cl_statinidir(dir, &w->st) == CL_SUCCESS)
		w->st_ok = true;
	w->print = av_watch_print(dir);
	return w;
}

int
av_watch_changed(const struct av_watch *w)
{
	bool readable = access(w->dir, R_OK | X_OK) == 0;

	if (!w->st_ok)
		return readable;
	if (!readable)
		return 1;
	/* A file added, or one whose modification second changed. */
	if (cl_statchkdir(&w->st) != 0)
		return 1;
	return av_watch_print(w->dir) != w->print;
}

const char *
av_watch_dir(const struct av_watch *w)
{
	return w->dir;
}

void
av_watch_free(struct av_watch *w)
{
	if (w == NULL)
		return;
	if (w->st_ok)
		cl_statfree(&w->st);
	free(w);
}

void
av_exit(void)
{
	/* The engines stay (a thread of libmilter may still hold one). */
	pthread_mutex_lock(&av_live_mu);
	for (struct av_engine *e = av_live; e != NULL; e = e->next)
		if (e->tmpdir[0] != '\0')
			nftw(e->tmpdir, av_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	pthread_mutex_unlock(&av_live_mu);
}
