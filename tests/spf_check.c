/*
 * spf_check.c: runs SPF checks through milter/spf.c for tests/t_spf.sh.
 *
 *   spf_check [-v] [-x] [-n NAMESERVERS] [-t MS] [-r RECEIVER] [-j N] CMD
 *
 *   valid HELO                 prints "valid" (exit 0) or "invalid" (1)
 *   helo IP HELO               checks the HELO identity
 *   mailfrom IP HELO FROM      checks the MAIL FROM identity
 *   batch FILE                 one MAIL FROM check per line of FILE:
 *                              NAME TAB HELO TAB IP TAB FROM, each field
 *                              %XX-encoded; prints NAME TAB RESULT TAB
 *                              REASON per line. With -j N, N threads run
 *                              the whole file at once on one checker and
 *                              must all agree.
 *
 * helo and mailfrom print result=, domain=, reason= and received= lines.
 * -x: HELO and FROM arguments are %XX-encoded. -v: debug log on stderr.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dns.h"
#include "log.h"
#include "spf.h"
#include "util.h"

struct spf_case {
	char *name, *helo, *ip, *from;
};

struct spf_batch {
	struct spf *s;
	struct spf_case *cases;
	size_t n;
	struct spf_check *out; /* n results, this thread's */
};

/* Decodes %XX escapes of s in place. */
static char *
spf_unescape(char *s)
{
	char *o = s;

	for (char *p = s; *p != '\0'; p++) {
		unsigned v;

		if (*p == '%' && sscanf(p + 1, "%2x", &v) == 1) {
			*o++ = (char)v;
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return s;
}

/* Reads the cases of path; their count, or -1. */
static long
spf_cases_read(const char *path, struct spf_case **out)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	size_t n = 0;

	*out = NULL;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *p = line, *fld[4];
		int i;

		line[strcspn(line, "\r\n")] = '\0';
		for (i = 0; i < 4 && p != NULL; i++)
			fld[i] = strsep(&p, "\t");
		if (i < 4)
			continue;
		*out = xrealloc(*out, (n + 1) * sizeof(**out));
		(*out)[n].name = xstrdup(fld[0]);
		(*out)[n].helo = spf_unescape(xstrdup(fld[1]));
		(*out)[n].ip = spf_unescape(xstrdup(fld[2]));
		(*out)[n].from = spf_unescape(xstrdup(fld[3]));
		n++;
	}
	fclose(f);
	return (long)n;
}

static void *
spf_batch_run(void *arg)
{
	struct spf_batch *b = arg;

	for (size_t i = 0; i < b->n; i++)
		spf_check_mailfrom(b->s, b->cases[i].ip, b->cases[i].helo,
				   b->cases[i].from, &b->out[i]);
	return NULL;
}

/* Runs the batch on nthreads threads; 0 if they all agree. */
static int
spf_batch(struct spf *s, const char *path, int nthreads)
{
	struct spf_batch *b = xcalloc((size_t)nthreads, sizeof(*b));
	pthread_t *t = xcalloc((size_t)nthreads, sizeof(*t));
	struct spf_case *cases;
	long n = spf_cases_read(path, &cases);
	int rc = 0;

	if (n < 0) {
		perror(path);
		return 2;
	}
	for (int k = 0; k < nthreads; k++) {
		b[k] = (struct spf_batch){s, cases, (size_t)n, NULL};
		b[k].out = xcalloc((size_t)n + 1, sizeof(struct spf_check));
		pthread_create(&t[k], NULL, spf_batch_run, &b[k]);
	}
	for (int k = 0; k < nthreads; k++)
		pthread_join(t[k], NULL);
	for (long i = 0; i < n; i++) {
		enum spf_result r0 = b[0].out[i].result;

		printf("%s\t%s\t%s\n", cases[i].name, spf_result_name(r0),
		       b[0].out[i].reason);
		for (int k = 1; k < nthreads; k++)
			if (b[k].out[i].result != r0) {
				printf("# %s: thread %d got %s\n",
				       cases[i].name, k,
				       spf_result_name(b[k].out[i].result));
				rc = 3;
			}
	}
	for (int k = 0; k < nthreads; k++)
		free(b[k].out);
	for (long i = 0; i < n; i++) {
		free(cases[i].name), free(cases[i].helo);
		free(cases[i].ip), free(cases[i].from);
	}
	free(cases), free(b), free(t);
	return rc;
}

static void
spf_print(const struct spf_check *r)
{
	printf("result=%s\ndomain=%s\nreason=%s\nreceived=%s\n",
	       spf_result_name(r->result), r->domain, r->reason,
	       r->received_spf);
}

static int
spf_usage(void)
{
	fprintf(stderr, "usage: spf_check [-vx] [-n nameservers] [-t ms] "
			"[-r receiver] [-j threads] valid|helo|mailfrom|batch "
			"ARGS...\n");
	return 2;
}

/* Runs command argv[0] on checker s. */
static int
spf_command(struct spf *s, int argc, char **argv, int esc, int nthreads)
{
	struct spf_check r;

	if (strcmp(argv[0], "helo") == 0 && argc == 3) {
		if (esc)
			spf_unescape(argv[2]);
		spf_check_helo(s, argv[1], argv[2], &r);
		spf_print(&r);
		return 0;
	}
	if (strcmp(argv[0], "mailfrom") == 0 && argc == 4) {
		if (esc)
			spf_unescape(argv[2]), spf_unescape(argv[3]);
		spf_check_mailfrom(s, argv[1], argv[2], argv[3], &r);
		spf_print(&r);
		return 0;
	}
	if (strcmp(argv[0], "batch") == 0 && argc == 2)
		return spf_batch(s, argv[1], nthreads);
	return spf_usage();
}

int
main(int argc, char **argv)
{
	const char *ns = "", *receiver = "mx.example.test";
	unsigned timeout = 1000;
	int c, esc = 0, nthreads = 1, rc;
	char err[256];
	struct dns *d;
	struct spf *s;

	while ((c = getopt(argc, argv, "vxn:t:r:j:")) != -1) {
		switch (c) {
		case 'v':
			log_set_level(LOG_DEBUG);
			break;
		case 'x':
			esc = 1;
			break;
		case 'n':
			ns = optarg;
			break;
		case 't':
			timeout = (unsigned)atoi(optarg);
			break;
		case 'r':
			receiver = optarg;
			break;
		case 'j':
			nthreads = atoi(optarg) > 0 ? atoi(optarg) : 1;
			break;
		default:
			return spf_usage();
		}
	}
	argc -= optind, argv += optind;
	if (argc == 2 && strcmp(argv[0], "valid") == 0) {
		bool v = spf_helo_valid(esc ? spf_unescape(argv[1]) : argv[1]);

		puts(v ? "valid" : "invalid");
		return v ? 0 : 1;
	}
	if (argc < 2)
		return spf_usage();
	if (dns_new(ns, timeout, &d, err, sizeof(err)) < 0) {
		fprintf(stderr, "spf_check: %s\n", err);
		return 2;
	}
	if (spf_new(d, receiver, &s, err, sizeof(err)) < 0) {
		fprintf(stderr, "spf_check: %s\n", err);
		dns_free(d);
		return 2;
	}
	rc = spf_command(s, argc, argv, esc, nthreads);
	spf_free(s);
	dns_free(d);
	return rc;
}
