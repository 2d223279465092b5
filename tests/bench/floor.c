/*
 * floor.c: the floor of edmilter's CPU per message. For each message of a
 * list (the one tests/bench/floor.sh builds, as tests/bench/run.sh does),
 * on one thread, it measures the CPU time of the library calls a check
 * cannot do without, and nothing of edmilter's own glue:
 *
 *  clamav  cl_fmap_open_memory, cl_scanmap_callback, cl_fmap_close over
 *          the bytes edmilter scans (its Received line first), the engine
 *          set up as av.c does (same limits, options, signatures);
 *  spf     libspf2: the HELO and the MAIL FROM identity, as pipe.c asks
 *          for both, over libspf2's own zone DNS layer holding the records
 *          of the zone file (warm: no query leaves the process);
 *  dkim    libopendkim: dkim_verify, dkim_header per header, dkim_eoh,
 *          dkim_body, dkim_eom, the signature list and its results,
 *          dkim_free; keys from dkim_set_key_lookup over the zone file
 *          (warm); messages without a DKIM-Signature cost nothing, as in
 *          dkimv.c;
 *  dmarc   GMime's address parser over the From headers, then
 *          libopendmarc: the organisational domain when the From domain
 *          has no record, and for a domain with a record the policy
 *          evaluation (connect_init, store_*, get_policy_to_enforce,
 *          fetch_*, connect_shutdown), the record taken from the zone file;
 *  mime    GMime: parse the message, walk the tree, decode every leaf
 *          part, convert text of other charsets to UTF-8 (mime.c without
 *          its names, limits and HTML to text);
 *  rules   every regular expression of the rules file, compiled here with
 *          rules.c's options (UTF, MATCH_INVALID_UTF, JIT, its limits) and
 *          matched with pcre2_match over what it applies to: each header
 *          of that name (RFC 2047 decoded by GMime, timed too), the
 *          decoded text or the raw body, each part's type, name and other
 *          name. Every test is run (no and/or short cut); within a test
 *          the values stop at the first match, as in rules.c.
 *
 * What is not timed: reading the file, filling a struct msg with
 * msg_parse (the bytes clamav and DKIM see), mime_parse for the rules'
 * inputs, building the "Name:value" header lines DKIM takes.
 *
 * Output: "raw floor KEY VALUE" lines and a table. Exit 0, or 1 when some
 * stage failed on some message (--smoke: the run is a test).
 */
#include <netinet/in.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <spf2/spf.h>
#include <spf2/spf_dns_zone.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <clamav.h>
#include <gmime/gmime.h>
#include <opendkim/dkim.h>
#include <opendmarc/dmarc.h>
#include <pcre2.h>

#include "conf.h"
#include "mime.h"
#include "msg.h"
#include "util.h"

/* In libopendmarc, not in its header: the organisational domain. */
int opendmarc_get_tld(u_char *domain, u_char *tld, size_t tld_len);

/* rules.c's bounds on one match. */
#define FLOOR_MATCH_LIMIT 100000
#define FLOOR_DEPTH_LIMIT 1000
#define FLOOR_HEAP_LIMIT_KIB 20000
#define FLOOR_JIT_STACK_MIN (32 * 1024)
#define FLOOR_JIT_STACK_MAX (1024 * 1024)

#define FLOOR_SMOKE_MSGS 12

enum floor_stage { ST_AV, ST_SPF, ST_DKIM, ST_DMARC, ST_MIME, ST_RULES, ST_N };

static const char *floor_stage_names[ST_N] = {"clamav", "spf",	"dkim",
					      "dmarc",	"mime", "rules"};

/* One record of the zone file: "NAME TYPE DATA" (TXT or A). */
struct floor_rr {
	char *name;
	int type;
	char *data;
};

/* What a test of the rules file looks at. */
enum floor_target {
	FT_HEADER,
	FT_HEADER_RAW,
	FT_SUBJECT,
	FT_BODY,
	FT_BODY_RAW,
	FT_ATT_NAME,
	FT_ATT_TYPE,
	FT_HELO,
	FT_ENV_FROM,
	FT_ENV_RCPT,
};

static const struct {
	const char *word;
	enum floor_target target;
	bool arg;
} floor_targets[] = {
    /* Longest first: "header.raw" before "header". */
    {"header.raw", FT_HEADER_RAW, true},
    {"header", FT_HEADER, true},
    {"subject", FT_SUBJECT, false},
    {"body.raw", FT_BODY_RAW, false},
    {"body", FT_BODY, false},
    {"attachment.name", FT_ATT_NAME, false},
    {"attachment.type", FT_ATT_TYPE, false},
    {"helo", FT_HELO, false},
    {"envelope.from", FT_ENV_FROM, false},
    {"envelope.rcpt", FT_ENV_RCPT, false},
};

struct floor_test {
	enum floor_target target;
	char *arg; /* the header name */
	pcre2_code *re;
};

/* The envelope of tests/bench/run.sh. */
struct floor_env {
	const char *ip, *helo, *from, *rcpt;
};

struct floor {
	struct floor_env env;
	struct conf *conf;
	struct floor_rr *zone;
	size_t nzone;

	struct cl_engine *engine;
	struct cl_scan_options scanopts;
	SPF_server_t *spf;
	DKIM_LIB *dkim;
	struct floor_test *tests;
	size_t ntests;
	unsigned skipped_tests;
	pcre2_match_data *md;
	pcre2_match_context *mctx;
	pcre2_jit_stack *js;

	/* Per message and stage, nanoseconds of thread CPU time. */
	uint64_t *ns[ST_N];
	size_t n, cap;
	unsigned errors[ST_N];
	unsigned dkim_msgs, dkim_pass, av_infected, dmarc_policies;
	unsigned spf_pass, rule_matches;
	uint64_t bytes;
	bool verbose;
};

static void __attribute__((format(printf, 1, 2), noreturn))
floor_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "floor: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* This thread's CPU time in nanoseconds. */
static uint64_t
floor_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The whole file at path, NUL-terminated; NULL if it cannot be read. */
static char *
floor_read(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	struct buf b = {0};
	char chunk[65536];
	size_t n;

	if (fp == NULL)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_append(&b, chunk, n);
	fclose(fp);
	if (b.data == NULL)
		buf_append(&b, "", 0);
	*len = b.len;
	return b.data;
}

/*
 * The zone
 */

static void
floor_zone_load(struct floor *f, const char *path)
{
	FILE *fp = fopen(path, "r");
	char line[8192];

	if (fp == NULL)
		floor_die("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *name, *type, *data, *save = NULL;
		struct floor_rr *rr;

		line[strcspn(line, "\r\n")] = '\0';
		if ((name = strtok_r(line, " \t", &save)) == NULL ||
		    name[0] == '#' ||
		    (type = strtok_r(NULL, " \t", &save)) == NULL)
			continue;
		data = save + strspn(save, " \t");
		f->zone = xrealloc(f->zone, (f->nzone + 1) * sizeof(*f->zone));
		rr = &f->zone[f->nzone++];
		rr->name = xstrdup(name);
		if (strcasecmp(type, "TXT") == 0)
			rr->type = ns_t_txt;
		else if (strcasecmp(type, "A") == 0)
			rr->type = ns_t_a;
		else
			floor_die("%s: type %s not handled", path, type);
		rr->data = xstrdup(data);
	}
	fclose(fp);
}

/* The first record of name and type in the zone, or NULL. */
static const char *
floor_zone_get(const struct floor *f, const char *name, int type)
{
	for (size_t i = 0; i < f->nzone; i++)
		if (f->zone[i].type == type &&
		    strcasecmp(f->zone[i].name, name) == 0)
			return f->zone[i].data;
	return NULL;
}

/*
 * Set-up of every library, not timed
 */

static void
floor_av_setup(struct floor *f, const char *sigs, const char *tmpdir)
{
	const struct conf *c = f->conf;
	unsigned nsigs = 0;
	cl_error_t rc;

	if ((rc = cl_init(CL_INIT_DEFAULT)) != CL_SUCCESS)
		floor_die("cl_init: %s", cl_strerror(rc));
	if ((f->engine = cl_engine_new()) == NULL)
		floor_die("cl_engine_new failed");
	if (cl_engine_set_str(f->engine, CL_ENGINE_TMPDIR, tmpdir) ||
	    cl_engine_set_num(f->engine, CL_ENGINE_MAX_SCANSIZE,
			      c->clamav_max_scansize) ||
	    cl_engine_set_num(f->engine, CL_ENGINE_MAX_FILESIZE,
			      c->clamav_max_filesize) ||
	    cl_engine_set_num(f->engine, CL_ENGINE_MAX_RECURSION,
			      c->clamav_max_recursion) ||
	    cl_engine_set_num(f->engine, CL_ENGINE_MAX_FILES,
			      c->clamav_max_files) ||
	    cl_engine_set_num(f->engine, CL_ENGINE_MAX_SCANTIME,
			      c->clamav_max_scantime))
		floor_die("libclamav: cannot set the engine up");
	if ((rc = cl_load(sigs, f->engine, &nsigs, CL_DB_STDOPT)) != CL_SUCCESS)
		floor_die("%s: %s", sigs, cl_strerror(rc));
	if ((rc = cl_engine_compile(f->engine)) != CL_SUCCESS)
		floor_die("%s: %s", sigs, cl_strerror(rc));

	/* av.c's options: every parser on, heuristics. */
	memset(&f->scanopts, 0, sizeof(f->scanopts));
	f->scanopts.parse = ~0u;
	f->scanopts.general = CL_SCAN_GENERAL_HEURISTICS;
	f->scanopts.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX;
}

/* libspf2 over its zone layer holding the zone file's records. */
static void
floor_spf_setup(struct floor *f)
{
	SPF_dns_server_t *z = SPF_dns_zone_new(NULL, "floor", 0);

	if (z == NULL)
		floor_die("SPF_dns_zone_new failed");
	for (size_t i = 0; i < f->nzone; i++)
		if (SPF_dns_zone_add_str(z, f->zone[i].name, f->zone[i].type,
					 NETDB_SUCCESS,
					 f->zone[i].data) != SPF_E_SUCCESS)
			floor_die("spf zone: cannot add %s", f->zone[i].name);
	if ((f->spf = SPF_server_new_dns(z, 0)) == NULL)
		floor_die("SPF_server_new_dns failed");
	SPF_server_set_rec_dom(f->spf, "mx.bench.example");
	SPF_server_set_max_dns_mech(f->spf, 10);
	SPF_server_set_max_dns_mx(f->spf, 10);
	SPF_server_set_max_dns_ptr(f->spf, 10);
}

static struct floor *floor_cur;

/* The key record of a signature, from the zone file (a warm cache). */
static DKIM_CBSTAT
floor_dkim_key(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
	char name[600];
	const char *rec;

	(void)dkim;
	snprintf(name, sizeof(name), "%s._domainkey.%s",
		 (const char *)dkim_sig_getselector(sig),
		 (const char *)dkim_sig_getdomain(sig));
	rec = floor_zone_get(floor_cur, name, ns_t_txt);
	if (rec == NULL || strlen(rec) >= buflen)
		return (DKIM_CBSTAT)DKIM_STAT_NOKEY;
	memcpy(buf, rec, strlen(rec) + 1);
	return (DKIM_CBSTAT)DKIM_STAT_OK;
}

/* libopendkim with dkimv.c's options and the key lookup above. */
static void
floor_dkim_setup(struct floor *f)
{
	unsigned flags = DKIM_LIBFLAGS_BADSIGHANDLES, minbits = 1;

	if ((f->dkim = dkim_init(NULL, NULL)) == NULL)
		floor_die("dkim_init failed");
	if (dkim_options(f->dkim, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags,
			 sizeof(flags)) != DKIM_STAT_OK ||
	    dkim_options(f->dkim, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS,
			 &minbits, sizeof(minbits)) != DKIM_STAT_OK)
		floor_die("libopendkim: cannot set options");
	dkim_set_key_lookup(f->dkim, floor_dkim_key);
}

static void
floor_dmarc_setup(struct floor *f)
{
	static OPENDMARC_LIB_T lib;

	memset(&lib, 0, sizeof(lib));
	lib.tld_type = OPENDMARC_TLD_TYPE_MOZILLA;
	snprintf((char *)lib.tld_source_file, sizeof(lib.tld_source_file), "%s",
		 f->conf->public_suffix_list);
	if (opendmarc_policy_library_init(&lib) != DMARC_PARSE_OKAY)
		floor_die("libopendmarc: cannot initialise with %s",
			  f->conf->public_suffix_list);
}

/* Reads "/re/flags" at *p; advances *p past it. */
static int
floor_rules_regex(const char **p, struct buf *re, uint32_t *flags)
{
	const char *s = *p;

	if (*s != '/')
		return -1;
	buf_reset(re);
	for (s++; *s != '\0' && *s != '/'; s++) {
		if (*s == '\\' && s[1] != '\0')
			buf_append(re, s++, 1);
		buf_append(re, s, 1);
	}
	if (*s != '/')
		return -1;
	buf_append(re, "", 0);
	*flags = 0;
	for (s++; strchr("imsx", *s) != NULL && *s != '\0'; s++)
		*flags |= *s == 'i'   ? PCRE2_CASELESS
			  : *s == 'm' ? PCRE2_MULTILINE
			  : *s == 's' ? PCRE2_DOTALL
				      : PCRE2_EXTENDED;
	*p = s;
	return 0;
}

/* Adds the test TARGET ["name"] =~|!~ /re/flags that starts at *p. */
static void
floor_rules_test(struct floor *f, const char **p, const char *path, int line)
{
	const char *s = *p;
	struct floor_test t = {0};
	struct buf re = {0};
	uint32_t flags;
	PCRE2_SIZE off;
	int err;
	size_t k;

	for (k = 0; k < sizeof(floor_targets) / sizeof(*floor_targets); k++)
		if (strncmp(s, floor_targets[k].word,
			    strlen(floor_targets[k].word)) == 0)
			break;
	if (k == sizeof(floor_targets) / sizeof(*floor_targets)) {
		/* A target whose values the floor does not have: skipped. */
		f->skipped_tests++;
		s = strstr(s, "~ /") + 2;
		if (floor_rules_regex(&s, &re, &flags) < 0)
			floor_die("%s:%d: cannot read the regex", path, line);
		buf_free(&re);
		*p = s;
		return;
	}
	t.target = floor_targets[k].target;
	s += strlen(floor_targets[k].word);
	s += strspn(s, " \t");
	if (floor_targets[k].arg && *s == '"') {
		size_t n = strcspn(s + 1, "\"");

		t.arg = xstrndup(s + 1, n);
		s += n + 2;
		s += strspn(s, " \t");
	}
	if ((s[0] != '=' && s[0] != '!') || s[1] != '~')
		floor_die("%s:%d: cannot read the test", path, line);
	s += 2;
	s += strspn(s, " \t");
	if (floor_rules_regex(&s, &re, &flags) < 0)
		floor_die("%s:%d: cannot read the regex", path, line);
	t.re = pcre2_compile((PCRE2_SPTR)re.data, re.len,
			     PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | flags, &err,
			     &off, NULL);
	if (t.re == NULL)
		floor_die("%s:%d: bad regex", path, line);
	(void)pcre2_jit_compile(t.re, PCRE2_JIT_COMPLETE);
	buf_free(&re);
	f->tests = xrealloc(f->tests, (f->ntests + 1) * sizeof(*f->tests));
	f->tests[f->ntests++] = t;
	*p = s;
}

/*
 * Every regex of the rules file, with the target before it. A test is a
 * "=~" or "!~" followed by "/"; its target is the word (and quoted header
 * name) before the operator.
 */
static void
floor_rules_setup(struct floor *f, const char *path)
{
	size_t len;
	char *text = floor_read(path, &len), *save = NULL, *l;
	int line = 0;

	if (text == NULL)
		floor_die("%s: %s", path, strerror(errno));
	for (l = strtok_r(text, "\n", &save); l != NULL;
	     l = strtok_r(NULL, "\n", &save)) {
		const char *p = l + strspn(l, " \t");

		line++;
		if (*p == '#')
			continue;
		while (*p != '\0') {
			const char *op = strstr(p, "~ /"), *start;

			if (op == NULL || op == p ||
			    (op[-1] != '=' && op[-1] != '!'))
				break;
			/* Back to the start of the target word. */
			start = op - 1;
			while (start > p && start[-1] == ' ')
				start--;
			if (start > p && start[-1] == '"') {
				start--;
				while (start > p && start[-1] != '"')
					start--;
				start--;
				while (start > p && start[-1] == ' ')
					start--;
			}
			while (start > p && start[-1] != ' ' &&
			       start[-1] != '\t')
				start--;
			floor_rules_test(f, &start, path, line);
			p = start;
		}
	}
	free(text);
	f->md = pcre2_match_data_create(1, NULL);
	f->mctx = pcre2_match_context_create(NULL);
	f->js = pcre2_jit_stack_create(FLOOR_JIT_STACK_MIN, FLOOR_JIT_STACK_MAX,
				       NULL);
	if (f->md == NULL || f->mctx == NULL || f->js == NULL)
		floor_die("pcre2: out of memory");
	pcre2_set_match_limit(f->mctx, FLOOR_MATCH_LIMIT);
	pcre2_set_depth_limit(f->mctx, FLOOR_DEPTH_LIMIT);
	pcre2_set_heap_limit(f->mctx, FLOOR_HEAP_LIMIT_KIB);
	pcre2_jit_stack_assign(f->mctx, NULL, f->js);
}

/*
 * The timed stages; each returns 0, or -1 when the library failed.
 */

static int
floor_av(struct floor *f, const struct msg *m)
{
	const char *name = NULL;
	unsigned long scanned = 0;
	cl_fmap_t *map;
	cl_error_t rc;

	if ((map = cl_fmap_open_memory(m->raw.data, m->raw.len)) == NULL)
		return -1;
	rc = cl_scanmap_callback(map, NULL, &name, &scanned, f->engine,
				 &f->scanopts, NULL);
	cl_fmap_close(map);
	if (rc == CL_VIRUS && f->verbose)
		fprintf(stderr, "floor: clamav: %s\n", name);
	if (rc == CL_VIRUS)
		f->av_infected++;
	return rc == CL_CLEAN || rc == CL_VIRUS ? 0 : -1;
}

/* One identity with libspf2; 0 on pass (the bench's envelope passes). */
static int
floor_spf_one(struct floor *f, const char *sender)
{
	SPF_request_t *req = SPF_request_new(f->spf);
	SPF_response_t *resp = NULL;
	int rc = -1;

	if (req == NULL)
		return -1;
	SPF_request_set_ipv4_str(req, f->env.ip);
	SPF_request_set_helo_dom(req, f->env.helo);
	SPF_request_set_env_from(req, sender);
	SPF_request_query_mailfrom(req, &resp);
	if (resp != NULL && SPF_response_result(resp) == SPF_RESULT_PASS)
		rc = 0;
	if (resp != NULL)
		SPF_response_free(resp);
	SPF_request_free(req);
	return rc;
}

static int
floor_spf(struct floor *f)
{
	char helo_id[300];
	int rc;

	snprintf(helo_id, sizeof(helo_id), "postmaster@%s", f->env.helo);
	rc = floor_spf_one(f, helo_id);
	if (floor_spf_one(f, f->env.from) < 0)
		rc = -1;
	if (rc == 0)
		f->spf_pass++;
	return rc;
}

/* What libopendkim said of the signatures, for DMARC. */
struct floor_dkim_out {
	size_t n;
	char domain[4][256], selector[4][128];
	bool pass[4];
};

static int
floor_dkim(struct floor *f, const struct msg *m, char **hdrs,
	   struct floor_dkim_out *out)
{
	DKIM_SIGINFO **sigs = NULL;
	DKIM_STAT st = DKIM_STAT_OK;
	DKIM *dkim;
	int nsigs = 0, rc = 0;

	dkim = dkim_verify(f->dkim, (const u_char *)"floor", NULL, &st);
	if (dkim == NULL)
		return -1;
	for (size_t i = 0; i < m->nhdrs && st == DKIM_STAT_OK; i++)
		st = dkim_header(dkim, (u_char *)hdrs[i], strlen(hdrs[i]));
	if (st == DKIM_STAT_OK)
		st = dkim_eoh(dkim);
	if (st == DKIM_STAT_OK && m->raw.len > m->body_start)
		st = dkim_body(dkim, (u_char *)m->raw.data + m->body_start,
			       m->raw.len - m->body_start);
	if (st == DKIM_STAT_OK)
		st = dkim_eom(dkim, NULL);
	if (st != DKIM_STAT_OK && st != DKIM_STAT_BADSIG &&
	    st != DKIM_STAT_NOSIG && st != DKIM_STAT_CANTVRFY &&
	    st != DKIM_STAT_NOKEY && st != DKIM_STAT_REVOKED)
		rc = -1;
	if (dkim_getsiglist(dkim, &sigs, &nsigs) == DKIM_STAT_OK)
		for (int i = 0; i < nsigs && out->n < 4; i++) {
			unsigned bits = 0;
			dkim_alg_t alg;

			out->pass[out->n] = DKIM_SIG_CHECK(sigs[i]);
			(void)dkim_sig_geterror(sigs[i]);
			(void)dkim_sig_getkeysize(sigs[i], &bits);
			(void)dkim_sig_getsignalg(sigs[i], &alg);
			snprintf(out->domain[out->n], 256, "%s",
				 (const char *)dkim_sig_getdomain(sigs[i]));
			snprintf(out->selector[out->n], 128, "%s",
				 (const char *)dkim_sig_getselector(sigs[i]));
			if (out->pass[out->n])
				f->dkim_pass++;
			out->n++;
		}
	dkim_free(dkim);
	return rc;
}

/* The domain of every mailbox of l (groups too) into doms. */
static void
floor_from_walk(InternetAddressList *l, char doms[][256], size_t *n)
{
	int count = internet_address_list_length(l);

	for (int i = 0; i < count && *n < 4; i++) {
		InternetAddress *ia = internet_address_list_get_address(l, i);
		const char *a, *at;

		if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			InternetAddressList *members =
			    internet_address_group_get_members(
				INTERNET_ADDRESS_GROUP(ia));

			if (members != NULL)
				floor_from_walk(members, doms, n);
			continue;
		}
		a = internet_address_mailbox_get_idn_addr(
		    INTERNET_ADDRESS_MAILBOX(ia));
		if (a != NULL && (at = strrchr(a, '@')) != NULL && at[1])
			snprintf(doms[(*n)++], 256, "%s", at + 1);
	}
}

/* The policy of one From domain whose record is known. */
static int
floor_dmarc_policy(struct floor *f, const char *dom, const char *record,
		   const char *org, const struct floor_dkim_out *dk)
{
	DMARC_POLICY_T *p;
	int dal = 0, sal = 0, pct = 100, pol = 0;
	const char *spfdom = strrchr(f->env.from, '@') + 1;

	if ((p = opendmarc_policy_connect_init((u_char *)f->env.ip, 0)) == NULL)
		return -1;
	opendmarc_policy_store_from_domain(p, (u_char *)dom);
	for (size_t i = 0; i < dk->n; i++)
		opendmarc_policy_store_dkim(
		    p, (u_char *)dk->domain[i], (u_char *)dk->selector[i],
		    dk->pass[i] ? DMARC_POLICY_DKIM_OUTCOME_PASS
				: DMARC_POLICY_DKIM_OUTCOME_FAIL,
		    NULL);
	opendmarc_policy_store_spf(p, (u_char *)spfdom,
				   DMARC_POLICY_SPF_OUTCOME_PASS,
				   DMARC_POLICY_SPF_ORIGIN_MAILFROM, NULL);
	if (opendmarc_policy_store_dmarc(p, (u_char *)record, (u_char *)dom,
					 (u_char *)org) != DMARC_PARSE_OKAY) {
		opendmarc_policy_connect_shutdown(p);
		return -1;
	}
	(void)opendmarc_get_policy_to_enforce(p);
	opendmarc_policy_fetch_alignment(p, &dal, &sal);
	opendmarc_policy_fetch_pct(p, &pct);
	if (opendmarc_get_policy_token_used(p) == DMARC_USED_POLICY_IS_SP)
		opendmarc_policy_fetch_sp(p, &pol);
	else
		opendmarc_policy_fetch_p(p, &pol);
	opendmarc_policy_connect_shutdown(p);
	f->dmarc_policies++;
	return 0;
}

static int
floor_dmarc(struct floor *f, const struct msg *m,
	    const struct floor_dkim_out *dk)
{
	char doms[4][256], name[300], org[256];
	const char *rec;
	size_t n = 0;
	int rc = 0;

	for (size_t i = 0; i < m->nhdrs; i++) {
		InternetAddressList *l;

		if (strcasecmp(m->hdrs[i].name, "From") != 0)
			continue;
		l = internet_address_list_parse(NULL, m->hdrs[i].value);
		if (l != NULL) {
			floor_from_walk(l, doms, &n);
			g_object_unref(l);
		}
	}
	for (size_t i = 0; i < n; i++) {
		/* As dmarc.c: the domain's record, else its org domain's. */
		org[0] = '\0';
		snprintf(name, sizeof(name), "_dmarc.%s", doms[i]);
		rec = floor_zone_get(f, name, ns_t_txt);
		if (rec == NULL &&
		    opendmarc_get_tld((u_char *)doms[i], (u_char *)org,
				      sizeof(org)) == 0 &&
		    org[0] != '\0' && strcasecmp(org, doms[i]) != 0) {
			snprintf(name, sizeof(name), "_dmarc.%s", org);
			rec = floor_zone_get(f, name, ns_t_txt);
		}
		if (rec != NULL &&
		    floor_dmarc_policy(
			f, doms[i], rec,
			org[0] && strcasecmp(org, doms[i]) ? org : NULL,
			dk) < 0)
			rc = -1;
	}
	return rc;
}

/* Decodes a leaf part, and converts text of another charset to UTF-8. */
static int
floor_mime_leaf(GMimePart *part)
{
	GMimeDataWrapper *content = g_mime_part_get_content(part);
	GMimeObject *o = GMIME_OBJECT(part);
	GMimeContentType *ct = g_mime_object_get_content_type(o);
	const char *charset;
	GMimeStream *mem, *fs;
	GMimeFilter *filter;
	GByteArray *raw;
	int rc = 0;

	if (content == NULL)
		return 0;
	mem = g_mime_stream_mem_new();
	if (g_mime_data_wrapper_write_to_stream(content, mem) < 0)
		rc = -1;
	raw = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	charset = g_mime_object_get_content_type_parameter(o, "charset");
	if (rc == 0 && g_mime_content_type_is_type(ct, "text", "*") &&
	    charset != NULL && strcasecmp(charset, "utf-8") != 0 &&
	    strcasecmp(charset, "us-ascii") != 0 &&
	    (filter = g_mime_filter_charset_new(charset, "UTF-8")) != NULL) {
		GMimeStream *out = g_mime_stream_mem_new();

		fs = g_mime_stream_filter_new(out);
		g_mime_stream_filter_add(GMIME_STREAM_FILTER(fs), filter);
		g_object_unref(filter);
		if (raw->len > 0)
			g_mime_stream_write(fs, (const char *)raw->data,
					    raw->len);
		g_mime_stream_flush(fs);
		g_object_unref(fs);
		g_object_unref(out);
	}
	g_object_unref(mem);
	return rc;
}

static int
floor_mime_walk(GMimeObject *o, int depth)
{
	int rc = 0;

	if (depth > 64)
		return 0;
	if (GMIME_IS_MULTIPART(o)) {
		GMimeMultipart *mp = GMIME_MULTIPART(o);
		int n = g_mime_multipart_get_count(mp);

		for (int i = 0; i < n; i++)
			if (floor_mime_walk(g_mime_multipart_get_part(mp, i),
					    depth + 1) < 0)
				rc = -1;
	} else if (GMIME_IS_MESSAGE_PART(o)) {
		GMimeMessage *msg =
		    g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));

		if (msg != NULL && msg->mime_part != NULL)
			rc = floor_mime_walk(msg->mime_part, depth + 1);
	} else if (GMIME_IS_PART(o)) {
		rc = floor_mime_leaf(GMIME_PART(o));
	}
	return rc;
}

static int
floor_mime(const struct msg *m)
{
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer(
	    m->raw.data + m->raw_start, m->raw.len - m->raw_start);
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	GMimeMessage *msg;
	int rc;

	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	msg = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	g_object_unref(stream);
	if (msg == NULL)
		return -1;
	rc = msg->mime_part != NULL ? floor_mime_walk(msg->mime_part, 0) : 0;
	g_object_unref(msg);
	return rc;
}

/* One match: 1, 0, or -1 for an error (a limit hit is no error). */
static int
floor_match(struct floor *f, const pcre2_code *re, const char *p, size_t len)
{
	int rc;

	if (p == NULL)
		return 0;
	rc = pcre2_match(re, (PCRE2_SPTR)p, len, 0, 0, f->md, f->mctx);
	if (rc >= 0) {
		f->rule_matches++;
		return 1;
	}
	if (rc == PCRE2_ERROR_NOMATCH || rc == PCRE2_ERROR_MATCHLIMIT ||
	    rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT ||
	    rc == PCRE2_ERROR_JIT_STACKLIMIT)
		return 0;
	return -1;
}

static int
floor_match_s(struct floor *f, const pcre2_code *re, const char *s)
{
	return s != NULL ? floor_match(f, re, s, strlen(s)) : 0;
}

/* Each header of that name until one matches; decoded unless raw. */
static int
floor_rules_headers(struct floor *f, const struct floor_test *t,
		    const struct msg *m, const char *name, bool raw)
{
	int rc = 0;

	for (size_t i = 0; i < m->nhdrs && rc == 0; i++) {
		char *d;

		if (strcasecmp(m->hdrs[i].name, name) != 0)
			continue;
		if (raw) {
			rc = floor_match_s(f, t->re, m->hdrs[i].raw);
			continue;
		}
		d = g_mime_utils_header_decode_text(NULL, m->hdrs[i].value);
		rc = floor_match_s(f, t->re, d ? d : m->hdrs[i].value);
		g_free(d);
	}
	return rc;
}

static int
floor_rules(struct floor *f, const struct msg *m, const struct mime_result *mr)
{
	int err = 0;

	for (size_t k = 0; k < f->ntests; k++) {
		const struct floor_test *t = &f->tests[k];
		int rc = 0;

		switch (t->target) {
		case FT_HEADER:
		case FT_HEADER_RAW:
			rc = floor_rules_headers(f, t, m, t->arg,
						 t->target == FT_HEADER_RAW);
			break;
		case FT_SUBJECT:
			rc = floor_rules_headers(f, t, m, "Subject", false);
			break;
		case FT_BODY:
			rc = floor_match(f, t->re,
					 mr->text.data ? mr->text.data : "",
					 mr->text.len);
			break;
		case FT_BODY_RAW:
			rc = floor_match(f, t->re, m->raw.data + m->body_start,
					 m->raw.len - m->body_start);
			break;
		case FT_ATT_NAME:
		case FT_ATT_TYPE:
			for (size_t i = 0; i < mr->nparts && rc == 0; i++) {
				const struct mime_part *pt = &mr->parts[i];

				rc = floor_match_s(f, t->re,
						   t->target == FT_ATT_NAME
						       ? pt->name
						       : pt->type);
				for (size_t a = 0;
				     rc == 0 && t->target == FT_ATT_NAME &&
				     a < pt->nalt_names;
				     a++)
					rc = floor_match_s(f, t->re,
							   pt->alt_names[a]);
			}
			break;
		case FT_HELO:
			rc = floor_match_s(f, t->re, f->env.helo);
			break;
		case FT_ENV_FROM:
			rc = floor_match_s(f, t->re, f->env.from);
			break;
		case FT_ENV_RCPT:
			rc = floor_match_s(f, t->re, f->env.rcpt);
			break;
		}
		if (rc < 0)
			err = -1;
	}
	return err;
}

/*
 * One message
 */

/* "Name:raw value" with LF folds made CRLF, as dkimv.c feeds them. */
static char **
floor_dkim_headers(const struct msg *m)
{
	char **h = xcalloc(m->nhdrs + 1, sizeof(*h));
	struct buf b = {0};

	for (size_t i = 0; i < m->nhdrs; i++) {
		const char *p;

		buf_reset(&b);
		buf_printf(&b, "%s:", m->hdrs[i].name);
		for (p = m->hdrs[i].raw; *p != '\0'; p++) {
			if (*p == '\n' &&
			    (p == m->hdrs[i].raw || p[-1] != '\r'))
				buf_append(&b, "\r", 1);
			buf_append(&b, p, 1);
		}
		h[i] = xstrdup(b.data);
	}
	buf_free(&b);
	return h;
}

static void
floor_record(struct floor *f, enum floor_stage st, uint64_t t0, uint64_t t1,
	     int rc, const char *path)
{
	f->ns[st][f->n] = t1 - t0;
	if (rc < 0) {
		f->errors[st]++;
		if (f->verbose || f->errors[st] <= 3)
			fprintf(stderr, "floor: %s: %s failed\n", path,
				floor_stage_names[st]);
	}
}

/* Measures one message; measured false for the warm-up. */
static void
floor_message(struct floor *f, const char *path, bool measured)
{
	struct floor_dkim_out dk;
	struct mime_limits lim;
	struct mime_result mr;
	struct msg m;
	uint64_t t0, t1;
	char *data, **hdrs;
	size_t len;
	int rc;

	if ((data = floor_read(path, &len)) == NULL)
		floor_die("%s: %s", path, strerror(errno));
	if (measured && f->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 1024;
		for (int s = 0; s < ST_N; s++)
			f->ns[s] =
			    xrealloc(f->ns[s], f->cap * sizeof(*f->ns[s]));
	}

	/* The message as edmilter holds it, and the rules' inputs. */
	msg_init(&m, (size_t)f->conf->max_message_size);
	msg_set_client(&m, f->env.ip, "mail.example.com");
	msg_set_helo(&m, f->env.helo);
	msg_set_from(&m, f->env.from);
	msg_add_rcpt(&m, f->env.rcpt);
	msg_parse(&m, data, len);
	hdrs = floor_dkim_headers(&m);
	lim.depth = (int)f->conf->mime_max_depth;
	lim.parts = (size_t)f->conf->mime_max_parts;
	lim.decoded_bytes = (size_t)f->conf->mime_max_decoded;
	(void)mime_parse(m.raw.data + m.raw_start, m.raw.len - m.raw_start,
			 &lim, &mr);
	memset(&dk, 0, sizeof(dk));
	if (!measured) {
		floor_av(f, &m);
		floor_spf(f);
		if (msg_header_count(&m, "DKIM-Signature") > 0)
			floor_dkim(f, &m, hdrs, &dk);
		floor_dmarc(f, &m, &dk);
		floor_mime(&m);
		floor_rules(f, &m, &mr);
		goto done;
	}

	t0 = floor_now();
	rc = floor_av(f, &m);
	t1 = floor_now();
	floor_record(f, ST_AV, t0, t1, rc, path);

	t0 = floor_now();
	rc = floor_spf(f);
	t1 = floor_now();
	floor_record(f, ST_SPF, t0, t1, rc, path);

	rc = 0;
	t0 = t1 = 0;
	if (msg_header_count(&m, "DKIM-Signature") > 0) {
		f->dkim_msgs++;
		t0 = floor_now();
		rc = floor_dkim(f, &m, hdrs, &dk);
		t1 = floor_now();
	}
	floor_record(f, ST_DKIM, t0, t1, rc, path);

	t0 = floor_now();
	rc = floor_dmarc(f, &m, &dk);
	t1 = floor_now();
	floor_record(f, ST_DMARC, t0, t1, rc, path);

	t0 = floor_now();
	rc = floor_mime(&m);
	t1 = floor_now();
	floor_record(f, ST_MIME, t0, t1, rc, path);

	t0 = floor_now();
	rc = floor_rules(f, &m, &mr);
	t1 = floor_now();
	floor_record(f, ST_RULES, t0, t1, rc, path);

	f->bytes += m.raw.len - m.raw_start;
	f->n++;
done:
	for (size_t i = 0; i < m.nhdrs; i++)
		free(hdrs[i]);
	free(hdrs);
	mime_result_free(&mr);
	msg_free(&m);
	free(data);
}

/*
 * The report
 */

static int
floor_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct floor_stat {
	double total_s, mean_us, p50_us, p99_us;
};

static struct floor_stat
floor_stat(const uint64_t *v, size_t n)
{
	struct floor_stat s = {0};
	uint64_t *c, sum = 0;

	if (n == 0)
		return s;
	c = xmalloc(n * sizeof(*c));
	memcpy(c, v, n * sizeof(*c));
	qsort(c, n, sizeof(*c), floor_cmp);
	for (size_t i = 0; i < n; i++)
		sum += c[i];
	s.total_s = (double)sum / 1e9;
	s.mean_us = (double)sum / 1e3 / (double)n;
	s.p50_us = (double)c[(n - 1) / 2] / 1e3;
	s.p99_us = (double)c[(size_t)((double)(n - 1) * 0.99)] / 1e3;
	free(c);
	return s;
}

/* The cost of one pair of timer reads, to read the figures against. */
static double
floor_timer_ns(void)
{
	uint64_t t0 = floor_now(), t1 = t0;

	for (int i = 0; i < 1000; i++)
		t1 = floor_now();
	return (double)(t1 - t0) / 1000.0 * 2;
}

static unsigned
floor_report(struct floor *f)
{
	struct floor_stat st[ST_N], all;
	uint64_t *sum = xcalloc(f->n ? f->n : 1, sizeof(*sum));
	unsigned errors = 0;
	double floor_mean = 0;

	for (int s = 0; s < ST_N; s++) {
		st[s] = floor_stat(f->ns[s], f->n);
		for (size_t i = 0; i < f->n; i++)
			sum[i] += f->ns[s][i];
		floor_mean += st[s].mean_us;
		errors += f->errors[s];
	}
	all = floor_stat(sum, f->n);
	free(sum);

	printf("raw floor messages %zu\n", f->n);
	printf("raw floor mean_bytes %.0f\n",
	       f->n ? (double)f->bytes / (double)f->n : 0);
	for (int s = 0; s < ST_N; s++) {
		const char *k = floor_stage_names[s];

		printf("raw floor %s_total_s %.3f\n", k, st[s].total_s);
		printf("raw floor %s_mean_us %.1f\n", k, st[s].mean_us);
		printf("raw floor %s_p50_us %.1f\n", k, st[s].p50_us);
		printf("raw floor %s_p99_us %.1f\n", k, st[s].p99_us);
		printf("raw floor %s_errors %u\n", k, f->errors[s]);
	}
	printf("raw floor floor_total_s %.3f\n", all.total_s);
	printf("raw floor floor_mean_us %.1f\n", floor_mean);
	printf("raw floor floor_p50_us %.1f\n", all.p50_us);
	printf("raw floor floor_p99_us %.1f\n", all.p99_us);
	printf("raw floor timer_pair_ns %.0f\n", floor_timer_ns());
	printf("raw floor dkim_messages %u\n", f->dkim_msgs);
	printf("raw floor dkim_sigs_pass %u\n", f->dkim_pass);
	printf("raw floor dmarc_policies %u\n", f->dmarc_policies);
	printf("raw floor spf_pass %u\n", f->spf_pass);
	printf("raw floor clamav_infected %u\n", f->av_infected);
	printf("raw floor rules_regexes %zu\n", f->ntests);
	printf("raw floor rules_tests_skipped %u\n", f->skipped_tests);
	printf("raw floor rules_matches %u\n", f->rule_matches);
	printf("raw floor errors %u\n", errors);

	printf("\n%-8s %10s %10s %10s %10s %7s\n", "stage", "total_s",
	       "mean_us", "p50_us", "p99_us", "errors");
	for (int s = 0; s < ST_N; s++)
		printf("%-8s %10.3f %10.1f %10.1f %10.1f %7u\n",
		       floor_stage_names[s], st[s].total_s, st[s].mean_us,
		       st[s].p50_us, st[s].p99_us, f->errors[s]);
	printf("%-8s %10.3f %10.1f %10.1f %10.1f %7u\n", "floor", all.total_s,
	       floor_mean, all.p50_us, all.p99_us, errors);
	printf("(%zu messages, one thread, thread CPU time; dkim over the %u "
	       "signed ones is averaged over all; p50/p99 of the floor are "
	       "of the per-message sums)\n",
	       f->n, f->dkim_msgs);
	return errors;
}

static void
floor_usage(void)
{
	fprintf(stderr,
		"usage: floor -z ZONE [-d SIGDIR] [-r RULES] [-t TMPDIR] "
		"[-n MSGS] [-w WARMUP]\n"
		"             [--ip ADDR] [--helo NAME] [--from ADDR] "
		"[--rcpt ADDR] [--smoke] [-v] LIST\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"ip", required_argument, NULL, 'I'},
	    {"helo", required_argument, NULL, 'H'},
	    {"from", required_argument, NULL, 'F'},
	    {"rcpt", required_argument, NULL, 'R'},
	    {"smoke", no_argument, NULL, 'S'},
	    {NULL, 0, NULL, 0},
	};
	struct floor f = {0};
	const char *zone = NULL, *sigs = "tests/data/sigs";
	const char *rules = "rules/baseline.rules", *tmpdir = "/tmp";
	long max = -1, warmup = 100;
	char line[4096], **paths = NULL;
	size_t npaths = 0;
	bool smoke = false;
	FILE *fp;
	int c;

	f.env.ip = "192.0.2.10";
	f.env.helo = "mail.example.com";
	f.env.from = "bench@example.com";
	f.env.rcpt = "rcpt@example.net";
	while ((c = getopt_long(argc, argv, "z:d:r:t:n:w:v", longopts, NULL)) !=
	       -1)
		switch (c) {
		case 'z':
			zone = optarg;
			break;
		case 'd':
			sigs = optarg;
			break;
		case 'r':
			rules = optarg;
			break;
		case 't':
			tmpdir = optarg;
			break;
		case 'n':
			max = atol(optarg);
			break;
		case 'w':
			warmup = atol(optarg);
			break;
		case 'v':
			f.verbose = true;
			break;
		case 'I':
			f.env.ip = optarg;
			break;
		case 'H':
			f.env.helo = optarg;
			break;
		case 'F':
			f.env.from = optarg;
			break;
		case 'R':
			f.env.rcpt = optarg;
			break;
		case 'S':
			smoke = true;
			break;
		default:
			floor_usage();
		}
	if (optind + 1 != argc || zone == NULL ||
	    strchr(f.env.from, '@') == NULL)
		floor_usage();
	if (smoke) {
		max =
		    max < 0 || max > FLOOR_SMOKE_MSGS ? FLOOR_SMOKE_MSGS : max;
		warmup = 0;
	}

	if ((fp = fopen(argv[optind], "r")) == NULL)
		floor_die("%s: %s", argv[optind], strerror(errno));
	while (fgets(line, sizeof(line), fp) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		paths = xrealloc(paths, (npaths + 1) * sizeof(*paths));
		paths[npaths++] = xstrdup(line);
	}
	fclose(fp);
	if (npaths == 0)
		floor_die("%s: no messages", argv[optind]);

	f.conf = conf_defaults();
	floor_cur = &f;
	floor_zone_load(&f, zone);
	mime_init();
	floor_av_setup(&f, sigs, tmpdir);
	floor_spf_setup(&f);
	floor_dkim_setup(&f);
	floor_dmarc_setup(&f);
	floor_rules_setup(&f, rules);

	/* A warm-up (allocator, caches, JIT), then every message once. */
	for (long i = 0; i < warmup && (size_t)i < npaths; i++)
		floor_message(&f, paths[i], false);
	f.dkim_pass = f.av_infected = f.dmarc_policies = 0;
	f.spf_pass = f.rule_matches = 0;
	for (size_t i = 0; i < npaths && (max < 0 || (long)i < max); i++)
		floor_message(&f, paths[i], true);

	c = floor_report(&f) > 0 || f.n == 0;
	if (smoke && f.spf_pass != f.n)
		c = 1;
	if (smoke)
		printf("floor: smoke: %s\n", c ? "FAILED" : "ok");
	for (size_t i = 0; i < npaths; i++)
		free(paths[i]);
	free(paths);
	return c;
}
