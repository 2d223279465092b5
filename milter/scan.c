/*
 * scan.c: edmilter-scan, the offline front end. Runs the very pipeline of
 * the daemon, with the same config, on message files or stdin, and prints
 * each check's result, the verdict, the reply and the header changes:
 * the admins' answer to "why was this mail rejected?".
 *
 * Exit: 0 when every message would be accepted (or tagged), 1 when one
 * would not, 2 on an error (unreadable file, bad config).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "edmilter.h"
#include "log.h"
#include "pipe.h"
#include "snap.h"

struct scan_env {
	const char *ip, *name, *helo, *from, *auth;
	const char **rcpts;
	size_t nrcpts;
	int json;
};

static void
scan_usage(void)
{
	fprintf(stderr,
		"usage: edmilter-scan [-c config] [-v] [--json] [--ip addr] "
		"[--name host] [--helo name]\n"
		"                     [--from addr] [--rcpt addr]... "
		"[--auth user] [file.eml...]\n"
		"With no file, or \"-\", the message is read from stdin.\n");
	exit(2);
}

static int
scan_read(const char *path, struct buf *b)
{
	FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char chunk[65536];
	size_t n;

	if (fp == NULL)
		return -1;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		if (buf_append(b, chunk, n) < 0) {
			errno = ENOMEM;
			break;
		}
	if (ferror(fp) || errno == ENOMEM) {
		if (fp != stdin)
			fclose(fp);
		return -1;
	}
	if (fp != stdin)
		fclose(fp);
	return 0;
}

/*
 * A JSON string: quotes, backslashes and control bytes escaped, a byte
 * that is not UTF-8 (from a message in another charset) as U+FFFD, so
 * that the output is always valid JSON (RFC 8259 8.1).
 */
static void
scan_json_str(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	putchar('"');
	while (p != NULL && *p) {
		/* Well-formed UTF-8 only (RFC 3629), as GLib checks it. */
		bool ok =
		    g_utf8_get_char_validated((const char *)p, -1) <= 0x10ffff;

		n = ok ? (size_t)g_utf8_skip[*p] : 1;
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			printf("\\u%04x", *p);
		else if (ok)
			fwrite(p, 1, n, stdout);
		else
			fputs("\\ufffd", stdout);
		p += n;
	}
	putchar('"');
}

static const char *
scan_hdrop_name(enum hdrop_kind k)
{
	static const char *names[] = {"add", "insert", "change", "delete"};

	return names[k];
}

static void
scan_json_spf(const char *name, const struct spf_check *c)
{
	printf(",\"%s\":{\"result\":", name);
	scan_json_str(spf_result_name(c->result));
	printf(",\"domain\":");
	scan_json_str(c->domain);
	printf(",\"reason\":");
	scan_json_str(c->reason);
	putchar('}');
}

static void
scan_json_dkim(const struct dkimv_report *d)
{
	printf(",\"dkim\":{\"result\":");
	scan_json_str(dkimv_result_name(d->result));
	printf(",\"error\":");
	scan_json_str(d->error);
	printf(",\"signatures\":[");
	for (size_t i = 0; i < d->nsigs; i++) {
		const struct dkimv_sig *s = &d->sigs[i];

		printf("%s{\"result\":", i ? "," : "");
		scan_json_str(dkimv_result_name(s->result));
		printf(",\"domain\":");
		scan_json_str(s->domain);
		printf(",\"selector\":");
		scan_json_str(s->selector);
		printf(",\"algorithm\":");
		scan_json_str(s->algo);
		printf(",\"keybits\":%u,\"partial_body\":%s,\"reason\":",
		       s->keybits, s->partial_body ? "true" : "false");
		scan_json_str(s->reason);
		putchar('}');
	}
	printf("]}");
}

static void
scan_json_dmarc(const struct dmarc_check *d)
{
	printf(",\"dmarc\":{\"result\":");
	scan_json_str(dmarc_result_name(d->result));
	printf(",\"from_domain\":");
	scan_json_str(d->from_domain);
	printf(",\"policy\":");
	scan_json_str(d->policy);
	printf(",\"disposition\":");
	scan_json_str(dmarc_disposition_name(d->disposition));
	printf(",\"spf_aligned\":%s,\"dkim_aligned\":%s,\"reason\":",
	       d->spf_aligned ? "true" : "false",
	       d->dkim_aligned ? "true" : "false");
	scan_json_str(d->reason);
	putchar('}');
}

/* The rules' outcome and the MIME parts they saw. */
static void
scan_json_rules(const struct pipe_report *r)
{
	const struct rules_outcome *o = &r->rules;

	if (!r->rules_on)
		return;
	printf(",\"rules\":{\"score\":%.1f,\"decided_by\":", o->score);
	if (o->decided && o->rule)
		scan_json_str(o->rule);
	else
		printf("null");
	printf(",\"stage\":");
	if (r->rules_stage)
		scan_json_str(r->rules_stage);
	else
		printf("null");
	printf(",\"limit_hit\":%s,\"hits\":[", o->limit_hit ? "true" : "false");
	for (size_t i = 0; i < o->nhits; i++) {
		printf("%s{\"name\":", i ? "," : "");
		scan_json_str(o->hits[i].name);
		printf(",\"score\":%.1f,\"matched\":", o->hits[i].score);
		scan_json_str(o->hits[i].matched);
		putchar('}');
	}
	printf("]},\"mime\":{\"limited\":%s,\"parts\":[",
	       r->mime.limited ? "true" : "false");
	for (size_t i = 0; i < r->mime.nparts; i++) {
		const struct mime_part *p = &r->mime.parts[i];

		printf("%s{\"type\":", i ? "," : "");
		scan_json_str(p->type);
		printf(",\"name\":");
		if (p->name)
			scan_json_str(p->name);
		else
			printf("null");
		printf(",\"size\":%zu,\"attachment\":%s}", p->size,
		       p->attachment ? "true" : "false");
	}
	printf("]}");
}

/* SPF, DKIM, DMARC and the header, when the checks ran. */
static void
scan_json_auth(const struct pipe_report *r)
{
	if (!r->auth_on)
		return;
	if (r->auth_checked) {
		scan_json_spf("spf_helo", &r->spf_helo);
		scan_json_spf("spf", &r->spf_mail);
		scan_json_dmarc(&r->dmarc);
	} else {
		printf(",\"auth_skipped\":");
		scan_json_str(r->auth_skipped);
	}
	scan_json_dkim(&r->dkim);
	printf(",\"authentication_results\":");
	scan_json_str(r->authres.data);
}

static void
scan_print_json(const char *path, const struct msg *m,
		const struct pipe_report *r)
{
	const struct verdict *v = &r->verdict;
	size_t nops = verdict_delivers(v->action) ? v->nops : 0;
	char reply[600] = "";

	if (v->rcode[0])
		snprintf(reply, sizeof(reply), "%s %s %s", v->rcode, v->xcode,
			 v->text);
	printf("{\"file\":");
	scan_json_str(path);
	printf(",\"size\":%zu,\"verdict\":", m->size);
	scan_json_str(verdict_action_name(v->action));
	printf(",\"reason\":");
	scan_json_str(v->reason);
	printf(",\"reply\":");
	if (reply[0])
		scan_json_str(reply);
	else
		printf("null");
	printf(",\"headers\":[");
	for (size_t i = 0; i < nops; i++) {
		printf("%s{\"op\":", i ? "," : "");
		scan_json_str(scan_hdrop_name(v->ops[i].kind));
		printf(",\"name\":");
		scan_json_str(v->ops[i].name);
		printf(",\"index\":%d,\"value\":", v->ops[i].index);
		if (v->ops[i].value)
			scan_json_str(v->ops[i].value);
		else
			printf("null");
		putchar('}');
	}
	printf("],\"clamav\":{\"result\":");
	scan_json_str(av_status_name(r->av.status));
	printf(",\"signature\":");
	if (r->av.status == AV_INFECTED)
		scan_json_str(r->av.name);
	else
		printf("null");
	printf(",\"error\":");
	if (r->av.status == AV_ERROR)
		scan_json_str(r->av.error);
	else
		printf("null");
	printf(",\"ms\":%u}", r->av.ms);
	scan_json_auth(r);
	scan_json_rules(r);
	printf(",\"ms\":%u}\n", r->ms);
}

static void
scan_print_text(const char *path, const struct msg *m,
		const struct pipe_report *r)
{
	const struct verdict *v = &r->verdict;
	size_t nops = verdict_delivers(v->action) ? v->nops : 0;

	printf("%s: %zu bytes\n", path, m->size);
	printf("  clamav:  %s", av_status_name(r->av.status));
	if (r->av.status == AV_INFECTED)
		printf(" (%s)", r->av.name);
	else if (r->av.status == AV_ERROR)
		printf(" (%s)", r->av.error);
	printf(", %u ms\n", r->av.ms);
	if (r->auth_checked) {
		printf("  spf:     %s (%s) helo: %s\n",
		       spf_result_name(r->spf_mail.result), r->spf_mail.reason,
		       spf_result_name(r->spf_helo.result));
		printf("  dmarc:   %s (%s)\n",
		       dmarc_result_name(r->dmarc.result), r->dmarc.reason);
	} else if (r->auth_on) {
		printf("  spf:     skipped (%s)\n", r->auth_skipped);
	}
	if (r->auth_on)
		printf("  dkim:    %s (%zu signatures)\n",
		       dkimv_result_name(r->dkim.result), r->dkim.nsigs);
	if (r->rules_on) {
		printf("  rules:   score %.1f", r->rules.score);
		if (r->rules.decided && r->rules.rule)
			printf(", decided by %s at %s", r->rules.rule,
			       r->rules_stage ? r->rules_stage : "EOM");
		putchar('\n');
		for (size_t i = 0; i < r->rules.nhits; i++)
			printf("    %s (%.1f): matched \"%s\"\n",
			       r->rules.hits[i].name, r->rules.hits[i].score,
			       r->rules.hits[i].matched);
	}
	printf("  verdict: %s (%s)\n", verdict_action_name(v->action),
	       v->reason);
	if (v->rcode[0])
		printf("  reply:   %s %s %s\n", v->rcode, v->xcode, v->text);
	for (size_t i = 0; i < nops; i++) {
		const struct hdrop *op = &v->ops[i];

		if (op->kind == HDROP_DELETE)
			printf("  header:  delete %s #%d\n", op->name,
			       op->index);
		else
			printf("  header:  %s %s: %s\n",
			       scan_hdrop_name(op->kind), op->name, op->value);
	}
}

/* Scans one file; returns 0 accepted, 1 not accepted, 2 error. */
static int
scan_one(const struct snap *s, const struct scan_env *env, const char *path)
{
	struct buf data = {0};
	struct pipe_report r;
	struct msg m;
	int rc;

	if (scan_read(path, &data) < 0) {
		fprintf(stderr, "edmilter-scan: %s: %s\n", path,
			strerror(errno));
		buf_free(&data);
		return 2;
	}
	msg_init(&m, (size_t)s->conf->max_message_size);
	m.max_headers = (size_t)s->conf->max_headers;
	m.max_header_size = (size_t)s->conf->max_header_size;
	msg_set_client(&m, env->ip, env->name);
	msg_set_helo(&m, env->helo);
	msg_set_from(&m, env->from);
	snprintf(m.qid, sizeof(m.qid), "scan");
	for (size_t i = 0; i < env->nrcpts; i++) {
		struct verdict v = {0};

		/* Past MaxRecipients, refused one by one as the daemon does. */
		if (m.nrcpts >= (size_t)s->conf->max_recipients &&
		    pipe_rcpt_limit(s->conf, &m, env->rcpts[i], &v) !=
			ACT_ACCEPT) {
			if (!env->json)
				printf("%s: recipient %s refused: %s %s %s\n",
				       path, env->rcpts[i], v.rcode, v.xcode,
				       v.text);
			verdict_free(&v);
			continue;
		}
		msg_add_rcpt(&m, env->rcpts[i]);
	}
	if (env->auth != NULL) {
		m.auth = xstrdup(env->auth);
		msg_set_macro(&m, "{auth_authen}", env->auth);
	}
	snprintf(m.qid, sizeof(m.qid), "scan");
	msg_parse(&m, data.data ? data.data : "", data.len);
	buf_free(&data);

	pipe_run(s, &m, NULL, &r);
	pipe_log(&m, &r);
	if (env->json)
		scan_print_json(path, &m, &r);
	else
		scan_print_text(path, &m, &r);
	rc = r.verdict.action <= ACT_TAG ? 0 : 1;
	pipe_report_free(&r);
	msg_free(&m);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, 'j'},
	    {"ip", required_argument, NULL, 'i'},
	    {"name", required_argument, NULL, 'n'},
	    {"helo", required_argument, NULL, 'h'},
	    {"from", required_argument, NULL, 'f'},
	    {"rcpt", required_argument, NULL, 'r'},
	    {"auth", required_argument, NULL, 'a'},
	    {"verbose", no_argument, NULL, 'v'},
	    {NULL, 0, NULL, 0},
	};
	struct scan_env env = {
	    .ip = "127.0.0.1", .name = "", .helo = "localhost", .from = ""};
	const char *conf_path = NULL;
	struct errlist errs = {0};
	struct snap *s;
	char err[EDM_ERRLEN];
	int ch, rc = 0, verbose = 0;

	while ((ch = getopt_long(argc, argv, "c:v", longopts, NULL)) != -1)
		switch (ch) {
		case 'c':
			conf_path = optarg;
			break;
		case 'j':
			env.json = 1;
			break;
		case 'i': {
			unsigned char a[sizeof(struct in6_addr)];

			if (inet_pton(AF_INET, optarg, a) != 1 &&
			    inet_pton(AF_INET6, optarg, a) != 1) {
				fprintf(stderr,
					"edmilter-scan: --ip %s: not an IPv4 "
					"or IPv6 address\n",
					optarg);
				exit(2);
			}
			env.ip = optarg;
			break;
		}
		case 'n':
			env.name = optarg;
			break;
		case 'h':
			env.helo = optarg;
			break;
		case 'f':
			env.from = optarg;
			break;
		case 'r':
			env.rcpts = xrealloc(env.rcpts,
					     (env.nrcpts + 1) * sizeof(char *));
			env.rcpts[env.nrcpts++] = optarg;
			break;
		case 'a':
			env.auth = optarg;
			break;
		case 'v':
			verbose = 1;
			break;
		default:
			scan_usage();
		}

	/* Without -c: the daemon's config if there is one, else defaults. */
	if (conf_path == NULL && access(EDM_DEFAULT_CONF, R_OK) == 0)
		conf_path = EDM_DEFAULT_CONF;
	log_init("edmilter-scan", LOG_MAIL, 1);
	log_set_level(verbose ? LOG_DEBUG : LOG_WARNING);
	if (av_global_init(err, sizeof(err)) < 0) {
		fprintf(stderr, "edmilter-scan: %s\n", err);
		return 2;
	}
	if (snap_build(conf_path, NULL, &s, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.lines[i]);
		errlist_free(&errs);
		return 2;
	}
	if (s->av == NULL)
		fprintf(stderr, "edmilter-scan: %s\n", s->av_error);
	snap_install(s);

	if (optind == argc) {
		rc = scan_one(s, &env, "-");
	} else {
		for (int i = optind; i < argc; i++) {
			int r = scan_one(s, &env, argv[i]);

			rc = r > rc ? r : rc;
		}
	}
	snap_install(NULL);
	free(env.rcpts);
	return rc;
}
