/*
 * dkim_check.c: runs the DKIM verifier (milter/dkimv.c) on message files
 * and prints what it found, for tests/t_dkim.sh.
 *
 *   dkim_check [-n NAMESERVERS] [-t TIMEOUT_MS] [-k MIN_KEY_BITS]
 *              [-m MAX_SIGS] [-l SIZE_LIMIT] [-j THREADS] [-v] FILE...
 *
 * Per file, one line "FILE result=R nsigs=N error=\"...\"" and one line per
 * signature "FILE sig=I result=R d=D s=S a=A b=B bits=N partial=0|1
 * reason=\"...\"". With -j, every file is also verified by THREADS threads
 * at once (sharing one verifier), and a last line "threads=N mismatches=M"
 * counts the results that differ from the first run. -v logs at debug
 * level to stderr. Exits 2 on a usage or setup error.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dkimv.h"
#include "dns.h"
#include "log.h"
#include "msg.h"

struct opts {
	const char *ns;
	unsigned timeout_ms;
	unsigned min_bits;
	unsigned max_sigs;
	size_t limit;
	int threads;
};

struct job {
	struct dkimv *v;
	char **files;
	int nfiles;
	char **want; /* the first run's output per file */
	int mismatches;
};

static int
read_file(const char *path, struct buf *b)
{
	char chunk[8192];
	FILE *f = fopen(path, "rb");
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(b, chunk, n);
	fclose(f);
	return 0;
}

/* Verifies one file; the report as text in out. */
static int
check(struct dkimv *v, const char *path, size_t limit, struct buf *out)
{
	struct dkimv_report r;
	struct buf raw = {0};
	struct msg m;

	if (read_file(path, &raw) < 0)
		return -1;
	msg_init(&m, limit);
	snprintf(m.qid, sizeof(m.qid), "TEST");
	msg_parse(&m, raw.data ? raw.data : "", raw.len);
	dkimv_verify(v, &m, &r);
	msg_free(&m);
	buf_free(&raw);

	buf_printf(out, "%s result=%s nsigs=%zu error=\"%s\"\n", path,
		   dkimv_result_name(r.result), r.nsigs, r.error);
	for (size_t i = 0; i < r.nsigs; i++) {
		const struct dkimv_sig *s = &r.sigs[i];

		buf_printf(out,
			   "%s sig=%zu result=%s d=%s s=%s a=%s b=%s bits=%u "
			   "partial=%d reason=\"%s\"\n",
			   path, i + 1, dkimv_result_name(s->result), s->domain,
			   s->selector, s->algo, s->b, s->keybits,
			   s->partial_body, s->reason);
	}
	return 0;
}

static void *
worker(void *arg)
{
	struct job *j = arg;
	struct buf out = {0};

	for (int i = 0; i < j->nfiles; i++) {
		buf_reset(&out);
		if (check(j->v, j->files[i], SIZE_MAX, &out) < 0 ||
		    strcmp(out.data, j->want[i]) != 0)
			j->mismatches++;
	}
	buf_free(&out);
	return NULL;
}

/* Every file again in n threads at once; returns the mismatches. */
static int
concurrent(struct dkimv *v, char **files, int nfiles, char **want, int n)
{
	pthread_t *t = calloc((size_t)n, sizeof(*t));
	struct job *jobs = calloc((size_t)n, sizeof(*jobs));
	int bad = 0;

	for (int i = 0; i < n; i++) {
		jobs[i] = (struct job){v, files, nfiles, want, 0};
		if (pthread_create(&t[i], NULL, worker, &jobs[i]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			exit(2);
		}
	}
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		bad += jobs[i].mismatches;
	}
	free(t);
	free(jobs);
	return bad;
}

static void
usage(void)
{
	fprintf(stderr, "usage: dkim_check [-n nameservers] [-t timeout_ms] "
			"[-k min_key_bits] [-m max_sigs] [-l limit] "
			"[-j threads] [-v] file...\n");
	exit(2);
}

static void
parse_opts(int argc, char **argv, struct opts *o)
{
	int c;

	*o = (struct opts){"", 2000, 1024, DKIMV_MAX_SIGS, SIZE_MAX, 0};
	log_init("dkim_check", 0, 1);
	log_set_level(LOG_INFO);
	while ((c = getopt(argc, argv, "n:t:k:m:l:j:v")) != -1) {
		switch (c) {
		case 'n':
			o->ns = optarg;
			break;
		case 't':
			o->timeout_ms = (unsigned)atoi(optarg);
			break;
		case 'k':
			o->min_bits = (unsigned)atoi(optarg);
			break;
		case 'm':
			o->max_sigs = (unsigned)atoi(optarg);
			break;
		case 'l':
			o->limit = (size_t)atol(optarg);
			break;
		case 'j':
			o->threads = atoi(optarg);
			break;
		case 'v':
			log_set_level(LOG_DEBUG);
			break;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct dns *d;
	struct dkimv *v;
	char err[256], **want;
	int nfiles, rc = 0;

	parse_opts(argc, argv, &o);
	nfiles = argc - optind;
	if (dns_new(o.ns, o.timeout_ms, &d, err, sizeof(err)) < 0 ||
	    dkimv_new(d, o.min_bits, o.max_sigs, &v, err, sizeof(err)) < 0) {
		fprintf(stderr, "dkim_check: %s\n", err);
		return 2;
	}
	want = calloc((size_t)nfiles, sizeof(*want));
	for (int i = 0; i < nfiles; i++) {
		struct buf out = {0};

		if (check(v, argv[optind + i], o.limit, &out) < 0)
			rc = 2;
		fputs(out.data ? out.data : "", stdout);
		want[i] = out.data ? out.data : strdup("");
	}
	if (o.threads > 0 && rc == 0)
		printf("threads=%d mismatches=%d\n", o.threads,
		       concurrent(v, argv + optind, nfiles, want, o.threads));
	for (int i = 0; i < nfiles; i++)
		free(want[i]);
	free(want);
	dkimv_free(v);
	dns_free(d);
	return rc;
}
