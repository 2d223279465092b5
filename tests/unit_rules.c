/*
 * unit_rules.c: the rules language of edmilter.rules(5): golden parser
 * files and error messages, every target, operator and action on messages
 * built as the milter builds them, stages, the match limits, hostile bytes,
 * the shipped rules/baseline.rules, and 8 threads sharing one rule set.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "rules.h"
#include "tap.h"

static char tmpl[] = "/tmp/edm-unit-rules.XXXXXX";

/* The source tree, as tests/run.sh exports it. */
static const char *
srcdir(void)
{
	const char *s = getenv("SRCDIR");

	return s && *s ? s : ".";
}

/* Joins the errors with '|', every prefix (a path) in them cut out. */
static void
join_errs(const struct errlist *e, const char *prefix, char *out, size_t len)
{
	out[0] = '\0';
	for (size_t i = 0; i < e->n; i++) {
		const char *l = e->lines[i], *p;

		if (i > 0)
			snprintf(out + strlen(out), len - strlen(out), "|");
		while ((p = strstr(l, prefix)) != NULL) {
			snprintf(out + strlen(out), len - strlen(out), "%.*s",
				 (int)(p - l), l);
			l = p + strlen(prefix);
		}
		snprintf(out + strlen(out), len - strlen(out), "%s", l);
	}
}

/* Loads rules from text; the errors come back as ":line:col: msg|...". */
static struct rules *
load_str(const char *text, char *errs, size_t len)
{
	char path[64];
	struct errlist e = {0};
	struct rules *rs;
	FILE *fp;
	int fd;

	snprintf(path, sizeof(path), "%s", tmpl);
	fd = mkstemp(path);
	fp = fdopen(fd, "w");
	fputs(text, fp);
	fclose(fp);
	if (rules_load(path, &rs, &e) < 0)
		rs = NULL;
	join_errs(&e, path, errs, len);
	errlist_free(&e);
	unlink(path);
	return rs;
}

/* Loads a file or folder of the source tree. */
static struct rules *
load_src(const char *rel, char *errs, size_t len)
{
	char path[1024], prefix[1100];
	struct errlist e = {0};
	struct rules *rs;

	snprintf(path, sizeof(path), "%s/%s", srcdir(), rel);
	snprintf(prefix, sizeof(prefix), "%s/", srcdir());
	if (rules_load(path, &rs, &e) < 0)
		rs = NULL;
	join_errs(&e, prefix, errs, len);
	errlist_free(&e);
	return rs;
}

/* A message as the milter sees it, decoded for the rules. */
struct tmsg {
	struct msg m;
	struct mime_result mr;
	struct rules_input in;
};

static void
tmsg_build(struct tmsg *t, const char *data, size_t len)
{
	memset(t, 0, sizeof(*t));
	msg_init(&t->m, 64 * 1024 * 1024);
	msg_set_client(&t->m, "192.0.2.10", "host.dynamic.example.net");
	msg_set_helo(&t->m, "mx.example.org");
	msg_set_macro(&t->m, "{daemon_name}", "smtpd");
	msg_set_from(&t->m, "<bounce@list.example>");
	msg_add_rcpt(&t->m, "<a@example.com>");
	msg_add_rcpt(&t->m, "<postmaster@example.com>");
	snprintf(t->m.qid, sizeof(t->m.qid), "QID1");
	msg_parse(&t->m, data, len);
	mime_parse(t->m.raw.data + t->m.raw_start,
		   t->m.raw.len - t->m.raw_start, NULL, &t->mr);
	t->in.m = &t->m;
	t->in.mime = &t->mr;
}

static void
tmsg_free(struct tmsg *t)
{
	mime_result_free(&t->mr);
	msg_free(&t->m);
}

/* Every stage in order, RCPT once per recipient, as the milter calls it. */
static void
eval_all(const struct rules *rs, struct tmsg *t, struct rules_outcome *o)
{
	struct rules_input in = t->in;

	memset(o, 0, sizeof(*o));
	for (int s = RULES_CONNECT; s <= RULES_EOM; s++) {
		if (s != RULES_RCPT) {
			rules_eval(rs, s, &in, o, t->m.qid);
			continue;
		}
		for (size_t i = 0; i < t->m.nrcpts; i++) {
			in.rcpt = t->m.rcpts[i];
			rules_eval(rs, s, &in, o, t->m.qid);
		}
		in.rcpt = NULL;
	}
}

static const char msg1[] =
    "From: =?UTF-8?B?TXkgQmFuaw==?= <alerts@phish.example>\n"
    "To: a@example.com\n"
    "Subject: =?UTF-8?Q?Caf=C3=A9_offer?=\n"
    "X-Spam: yes\n"
    "X-Enc: =?ISO-8859-1?Q?caf=E9?=\n"
    "X-Folded: one\n\ttwo\n"
    "Message-ID: <1@x>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"b\"\n"
    "\n"
    "--b\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Hello caf=C3=A9 world\n"
    "--b\n"
    "Content-Type: application/octet-stream; name=\"setup.exe\"\n"
    "Content-Disposition: attachment; filename=\"setup.exe\"\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    "--b--\n";

/* One condition and whether it holds on msg1. */
static const struct {
	const char *cond;
	bool want;
} conds[] = {
    {"client.ip == \"192.0.2.10\"", true},
    {"client.ip != \"192.0.2.10\"", false},
    {"client.ip in 192.0.2.0/24", true},
    {"client.ip in 10.0.0.0/8, 2001:db8::/32", false},
    {"client.ip in 10.0.0.0/8, \"192.0.2.10\"", true},
    {"client.ip in ::ffff:192.0.2.0/120", true},
    {"client.ip =~ /^192\\.0\\.2\\./", true},
    {"client.name =~ /\\.DYNAMIC\\./i", true},
    {"client.name =~ /\\.DYNAMIC\\./", false},
    {"helo == \"mx.example.org\"", true},
    {"helo == \"MX.example.org\"", false},
    {"envelope.from =~ /^bounce@/", true},
    {"envelope.from !~ /^bounce@/", false},
    {"envelope.rcpt == \"postmaster@example.com\"", true},
    {"envelope.rcpt == \"b@example.com\"", false},
    {"envelope.rcpt != \"a@example.com\"", false},
    {"auth =~ /./", false},
    {"auth !~ /./", true},
    {"macro \"{daemon_name}\" == \"smtpd\"", true},
    {"macro \"daemon_name\" == \"smtpd\"", true},
    {"macro \"{nope}\" =~ /./", false},
    {"header \"X-Spam\" == \"yes\"", true},
    {"header \"x-spam\" =~ /^YES$/i", true},
    {"header \"X-None\" =~ /./", false},
    {"header \"X-None\" !~ /./", true},
    {"header \"X-Enc\" == \"caf\xc3\xa9\"", true},
    {"header.raw \"X-Enc\" =~ /^ =\\?ISO-8859-1\\?Q\\?caf=E9\\?=$/", true},
    {"header \"X-Folded\" == \"one\ttwo\"", true},
    {"header.raw \"X-Folded\" =~ /one\\n\\ttwo/", true},
    {"subject == \"Caf\xc3\xa9 offer\"", true},
    {"subject =~ /^caf\\x{e9}/i", true},
    {"from.name == \"My Bank\"", true},
    {"from.addr == \"alerts@phish.example\"", true},
    {"from.addr =~ /@bank\\.example$/", false},
    {"body =~ /Hello caf\xc3\xa9 world/", true},
    {"body =~ /caf=C3=A9/", false},
    {"body.raw =~ /caf=C3=A9/", true},
    {"body.raw =~ /^TVqQ/m", true},
    {"body.raw =~ /^TVqQ/", false},
    {"attachment.name == \"setup.exe\"", true},
    {"attachment.name =~ /\\.EXE$/i", true},
    {"attachment.type == \"application/octet-stream\"", true},
    {"attachment.type == \"text/plain\"", true},
    {"attachment.type == \"image/png\"", false},
    {"attachment.size > 10", true},
    {"attachment.size >= 1K", false},
    {"attachment.size < 1M", true},
    {"attachment.size != 0", true},
    {"size > 100", true},
    {"size > 1M", false},
    {"size <= 10K", true},
    {"size == 0", false},
    {"virus == false", true},
    {"virus == true", false},
    {"virus != true", true},
    {"spf == \"pass\"", true},
    {"spf =~ /^(fail|softfail)$/", false},
    {"dkim =~ /./", false},
    {"dkim !~ /./", true},
    {"dmarc == \"none\"", true},
    {"not helo == \"x\"", true},
    {"not not helo == \"x\"", false},
    {"helo == \"x\" or size > 1", true},
    {"helo == \"x\" and size > 1", false},
    {"(helo == \"x\" or size > 1) and not subject =~ /Caf/", false},
    {"helo == \"x\" or size > 1 and subject =~ /Caf/", true},
    {"(helo == \"x\" or size > 1) and subject =~ /nothing/", false},
};

/* Every target and operator, one rule each, on msg1. */
static void
test_targets(void)
{
	struct tmsg t;
	char errs[1024], text[512];

	tmsg_build(&t, msg1, sizeof(msg1) - 1);
	t.in.spf = "pass";
	t.in.dmarc = "none";
	ok(t.mr.nparts == 2, "msg1 has two parts");
	for (size_t i = 0; i < sizeof(conds) / sizeof(conds[0]); i++) {
		struct rules_outcome o;
		struct rules *rs;

		snprintf(text, sizeof(text),
			 "rule t {\n    %s\n    => score 1\n}\n",
			 conds[i].cond);
		rs = load_str(text, errs, sizeof(errs));
		if (rs == NULL) {
			ok(0, "%s: loads (%s)", conds[i].cond, errs);
			continue;
		}
		eval_all(rs, &t, &o);
		ok((o.nhits == 1) == conds[i].want && !o.limit_hit, "%s: %s",
		   conds[i].cond, conds[i].want ? "true" : "false");
		rules_outcome_free(&o);
		rules_free(rs);
	}

	/* The virus flag set. */
	{
		struct rules_outcome o;
		struct rules *rs =
		    load_str("rule v { virus == true => reject \"virus\" }",
			     errs, sizeof(errs));

		t.in.virus = true;
		t.in.virus_name = "Eicar-Test";
		eval_all(rs, &t, &o);
		ok(o.decided && o.action == ACT_REJECT && o.nhits == 1,
		   "virus == true with a virus");
		is_str(o.nhits ? o.hits[0].matched : "", "Eicar-Test",
		       "the virus name is the matched text");
		rules_outcome_free(&o);
		rules_free(rs);
		t.in.virus = false;
	}

	/* auth set. */
	{
		struct rules_outcome o;
		struct rules *rs =
		    load_str("rule a { auth == \"alice\" => accept }", errs,
			     sizeof(errs));

		t.m.auth = strdup("alice");
		eval_all(rs, &t, &o);
		ok(o.decided && o.action == ACT_ACCEPT, "auth == alice");
		rules_outcome_free(&o);
		rules_free(rs);
	}
	tmsg_free(&t);
}

/* What each hit records as its matched text. */
static void
test_matched(void)
{
	static const struct {
		const char *cond, *want;
	} m[] = {
	    {"subject =~ /Caf./", "Caf\xc3\xa9"},
	    {"client.ip in 192.0.2.0/24", "192.0.2.10"},
	    {"helo == \"mx.example.org\"", "mx.example.org"},
	    {"size > 1", NULL},
	    {"not helo == \"x\" and body =~ /w.rld/", "world"},
	    {"helo !~ /zzz/", ""},
	    {"body.raw =~ /Hello[^\\n]*/", "Hello caf=C3=A9 world?"},
	};
	struct tmsg t;
	char errs[512], text[512], num[32];

	tmsg_build(&t, msg1, sizeof(msg1) - 1);
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		struct rules_outcome o;
		struct rules *rs;

		snprintf(text, sizeof(text), "rule t { %s => score 1 }",
			 m[i].cond);
		rs = load_str(text, errs, sizeof(errs));
		eval_all(rs, &t, &o);
		snprintf(num, sizeof(num), "%zu", t.m.size);
		is_str(o.nhits ? o.hits[0].matched : "(none)",
		       m[i].want ? m[i].want : num, "matched text of %s",
		       m[i].cond);
		rules_outcome_free(&o);
		rules_free(rs);
	}

	/* A long match is cut to 127 bytes and made safe. */
	{
		struct rules_outcome o;
		struct rules *rs =
		    load_str("rule t { body.raw =~ /.+/s => score 1 }", errs,
			     sizeof(errs));

		eval_all(rs, &t, &o);
		ok(o.nhits == 1 && strlen(o.hits[0].matched) == 127 &&
		       strchr(o.hits[0].matched, '\n') == NULL &&
		       strcmp(o.hits[0].matched + 124, "...") == 0,
		   "a long match is cut and marked (%s)",
		   o.nhits ? o.hits[0].matched : "");
		rules_outcome_free(&o);
		rules_free(rs);
	}
	tmsg_free(&t);
}

/* Actions and how they add up. */
static void
test_actions(void)
{
	struct tmsg t;
	struct rules_outcome o;
	struct rules *rs;
	char errs[1024];

	tmsg_build(&t, msg1, sizeof(msg1) - 1);

	rs = load_str("rule r { helo =~ /./ => reject \"go away\" }", errs,
		      sizeof(errs));
	eval_all(rs, &t, &o);
	ok(o.decided && o.action == ACT_REJECT && !strcmp(o.rcode, "550") &&
	       !strcmp(o.xcode, "5.7.1") && !strcmp(o.text, "go away") &&
	       !strcmp(o.rule, "r"),
	   "reject: 550 5.7.1 by default");
	rules_outcome_free(&o);
	rules_free(rs);

	rs = load_str("rule r { helo =~ /./ => reject 554 5.7.9 \"no\" }", errs,
		      sizeof(errs));
	eval_all(rs, &t, &o);
	ok(o.decided && o.action == ACT_REJECT && !strcmp(o.rcode, "554") &&
	       !strcmp(o.xcode, "5.7.9"),
	   "reject with its own codes");
	rules_outcome_free(&o);
	rules_free(rs);

	rs = load_str("rule r { helo =~ /./ => tempfail \"later\" }", errs,
		      sizeof(errs));
	eval_all(rs, &t, &o);
	ok(o.decided && o.action == ACT_TEMPFAIL && !strcmp(o.rcode, "451") &&
	       !strcmp(o.xcode, "4.7.1") && !strcmp(o.text, "later"),
	   "tempfail: 451 4.7.1 by default");
	rules_outcome_free(&o);
	rules_free(rs);

	rs = load_str("rule r { helo =~ /./ => tempfail 421 4.3.2 \"x\" }",
		      errs, sizeof(errs));
	eval_all(rs, &t, &o);
	ok(o.decided && !strcmp(o.rcode, "421") && !strcmp(o.xcode, "4.3.2"),
	   "tempfail with its own codes");
	rules_outcome_free(&o);
	rules_free(rs);

	rs = load_str("rule r { subject =~ /./ => discard }", errs,
		      sizeof(errs));
	eval_all(rs, &t, &o);
	ok(o.decided && o.action == ACT_DISCARD, "discard");
	rules_outcome_free(&o);
	rules_free(rs);

	rs = load_str("rule r { subject =~ /./ => quarantine \"held\" }", errs,
		      sizeof(errs));
	eval_all(rs, &t, &o);
	ok(o.decided && o.action == ACT_QUARANTINE && !strcmp(o.text, "held"),
	   "quarantine with a reason");
	rules_outcome_free(&o);
	rules_free(rs);

	rs = load_str("rule r { subject =~ /./ => quarantine }", errs,
		      sizeof(errs));
	eval_all(rs, &t, &o);
	ok(o.decided && o.action == ACT_QUARANTINE, "quarantine alone");
	rules_outcome_free(&o);
	rules_free(rs);

	/* accept ends evaluation: an allow-list. */
	rs = load_str("rule ok { client.ip in 192.0.2.0/24 => accept }\n"
		      "rule no { helo =~ /./ => reject \"no\" }\n",
		      errs, sizeof(errs));
	eval_all(rs, &t, &o);
	ok(o.decided && o.action == ACT_ACCEPT && !strcmp(o.rule, "ok") &&
	       o.nhits == 1,
	   "accept wins over a later reject");
	rules_outcome_free(&o);
	rules_free(rs);

	/* score, header and tag accumulate; the first decisive rule wins. */
	rs = load_str(
	    "rule s1 { subject =~ /Caf/ => score 2.5 header \"X-A\" \"1\" "
	    "tag \"[SPAM]\" }\n"
	    "rule s2 { subject =~ /./ and helo =~ /./ => score -0.5 score 1 "
	    "tag \"[X]\" }\n"
	    "rule no { size > 1M => reject \"big\" }\n"
	    "rule q { body =~ /world/ => quarantine \"q\" score 3 }\n"
	    "rule late { subject =~ /./ => score 100 reject \"late\" }\n"
	    "rule after { subject =~ /./ => score 7 header \"X-B\" \"2\" }\n",
	    errs, sizeof(errs));
	eval_all(rs, &t, &o);
	ok(o.decided && o.action == ACT_QUARANTINE && !strcmp(o.rule, "q"),
	   "first decisive rule in file order wins");
	ok(o.score == 6.0, "scores add up: 2.5 - 0.5 + 1 + 3 (%g)", o.score);
	ok(o.nhits == 3 && !strcmp(o.hits[0].name, "s1") &&
	       o.hits[0].score == 2.5 && !strcmp(o.hits[1].name, "s2") &&
	       o.hits[1].score == 0.5 && !strcmp(o.hits[2].name, "q") &&
	       o.hits[2].score == 3,
	   "hits in order with their scores");
	ok(o.nheaders == 1 && !strcmp(o.headers[0].name, "X-A") &&
	       !strcmp(o.headers[0].value, "1") &&
	       o.headers[0].kind == HDROP_ADD,
	   "header action of a rule before the decision");
	is_str(o.subject_tag, "[SPAM]", "the first tag is kept");
	rules_outcome_free(&o);
	rules_free(rs);
	tmsg_free(&t);
}

/* Rules are decided at the latest stage they need. */
static void
test_stages(void)
{
	struct tmsg t;
	struct rules_outcome o;
	struct rules_input in;
	struct rules *rs;
	char errs[1024];

	tmsg_build(&t, msg1, sizeof(msg1) - 1);
	in = t.in;

	rs = load_str("rule late { subject =~ /./ => reject \"eom\" }\n"
		      "rule conn { client.ip in 192.0.2.0/24 => reject "
		      "\"connect\" }\n",
		      errs, sizeof(errs));
	ok(rules_earliest_needed(rs) == RULES_CONNECT,
	   "earliest needed: connect");
	memset(&o, 0, sizeof(o));
	rules_eval(rs, RULES_CONNECT, &in, &o, NULL);
	ok(o.decided && !strcmp(o.rule, "conn") && !strcmp(o.text, "connect"),
	   "a client.ip reject is decided at CONNECT");
	rules_eval(rs, RULES_EOM, &in, &o, NULL);
	ok(!strcmp(o.rule, "conn") && o.nhits == 1,
	   "once decided, later calls do nothing");
	rules_outcome_free(&o);
	rules_free(rs);

	rs = load_str("rule late { subject =~ /./ => reject \"eom\" }\n"
		      "rule mail { envelope.from =~ /^nobody/ and helo =~ /./ "
		      "=> reject \"m\" }\n",
		      errs, sizeof(errs));
	ok(rules_earliest_needed(rs) == RULES_MAIL, "earliest needed: mail");
	memset(&o, 0, sizeof(o));
	rules_eval(rs, RULES_CONNECT, &in, &o, NULL);
	rules_eval(rs, RULES_HELO, &in, &o, NULL);
	rules_eval(rs, RULES_MAIL, &in, &o, NULL);
	ok(!o.decided && o.nhits == 0, "EOM rules are not run at MAIL");
	rules_eval(rs, RULES_EOM, &in, &o, NULL);
	ok(o.decided && !strcmp(o.rule, "late"), "they are at EOM");
	rules_outcome_free(&o);
	rules_free(rs);

	/* RCPT: the recipient being added; again at EOM over all of them. */
	rs = load_str("rule pm { envelope.rcpt == \"postmaster@example.com\" "
		      "=> accept }\n"
		      "rule sc { envelope.rcpt =~ /^a@/ => score 2 }\n",
		      errs, sizeof(errs));
	ok(rules_earliest_needed(rs) == RULES_RCPT, "earliest needed: rcpt");
	memset(&o, 0, sizeof(o));
	in.rcpt = "a@example.com";
	rules_eval(rs, RULES_RCPT, &in, &o, NULL);
	ok(!o.decided && o.nhits == 0 && o.score == 0,
	   "at RCPT: another recipient; a score rule waits for EOM");
	in.rcpt = "postmaster@example.com";
	rules_eval(rs, RULES_RCPT, &in, &o, NULL);
	ok(o.decided && o.action == ACT_ACCEPT && !strcmp(o.rule, "pm"),
	   "at RCPT: the recipient being added");
	rules_outcome_free(&o);
	in.rcpt = NULL;
	memset(&o, 0, sizeof(o));
	rules_eval(rs, RULES_EOM, &in, &o, NULL);
	ok(o.decided && !strcmp(o.rule, "pm") && o.nhits == 1,
	   "at EOM: RCPT rules run again over all recipients");
	rules_outcome_free(&o);
	rules_free(rs);
	rs = load_str("rule sc { envelope.rcpt =~ /^a@/ => score 2 }\n", errs,
		      sizeof(errs));
	eval_all(rs, &t, &o);
	ok(!o.decided && o.score == 2 && o.nhits == 1,
	   "a RCPT score counts once over the whole message (%g)", o.score);
	rules_outcome_free(&o);
	rules_free(rs);

	/* A stage the MTA skipped is caught up; a fresh outcome starts over. */
	rs = load_str("rule c { client.ip in 192.0.2.0/24 => score 1 }\n"
		      "rule h { helo =~ /example/ => score 2 }\n"
		      "rule m { envelope.from =~ /bounce/ => score 4 }\n"
		      "rule e { subject =~ /./ => score 8 }\n",
		      errs, sizeof(errs));
	memset(&o, 0, sizeof(o));
	rules_eval(rs, RULES_CONNECT, &in, &o, NULL);
	rules_eval(rs, RULES_MAIL, &in, &o, NULL);
	ok(o.score == 7 && o.nhits == 3 && !strcmp(o.hits[1].name, "h"),
	   "HELO skipped: its rules run at MAIL, once (%g)", o.score);
	rules_eval(rs, RULES_MAIL, &in, &o, NULL);
	ok(o.score == 7, "a stage called twice counts once");
	rules_outcome_free(&o);
	rules_eval(rs, RULES_MAIL, &in, &o, NULL);
	rules_eval(rs, RULES_EOM, &in, &o, NULL);
	ok(o.score == 15 && o.nhits == 4,
	   "a fresh outcome for the next message: connect rules count again");
	rules_outcome_free(&o);
	rules_free(rs);

	rs = load_str("rule s { size > 1 => score 1 }\n", errs, sizeof(errs));
	ok(rules_earliest_needed(rs) == RULES_EOM,
	   "earliest needed: EOM when no rule needs less");
	rules_free(rs);
	tmsg_free(&t);
}

/* Runs one body against (a+)+$ and says how long it took. */
static void
test_limits(void)
{
	struct buf b = {0};
	struct tmsg t;
	struct rules_outcome o;
	struct rules *rs;
	char errs[512], logpath[] = "/tmp/edm-unit-rules-log.XXXXXX";
	uint64_t t0;
	int saved, fd;

	buf_printf(&b, "Subject: x\n\n");
	for (int i = 0; i < 5000; i++)
		buf_append(&b, "a", 1);
	buf_append(&b, "!\n", 2);
	tmsg_build(&t, b.data, b.len);
	rs = load_str("rule cata { body =~ /(a+)+$/ => reject \"no\" }\n"
		      "rule cata-raw { body.raw =~ /^(a|aa)+$/ => score 1 }\n"
		      "rule after { subject == \"x\" => score 2 }\n",
		      errs, sizeof(errs));

	/* The warning goes to stderr: catch it in a file. */
	fd = mkstemp(logpath);
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	t0 = util_now_ms();
	eval_all(rs, &t, &o);
	t0 = util_now_ms() - t0;
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ok(t0 < 2000, "catastrophic patterns stop quickly (%llu ms)",
	   (unsigned long long)t0);
	ok(!o.decided && o.limit_hit && o.nhits == 1 &&
	       !strcmp(o.hits[0].name, "after"),
	   "a limit hit counts as no match; later rules still run");
	{
		char logtext[4096] = "";
		ssize_t n = pread(fd, logtext, sizeof(logtext) - 1, 0);

		logtext[n > 0 ? n : 0] = '\0';
		ok(strstr(logtext, "QID1: rules: cata: pattern hit a limit") !=
		       NULL,
		   "the limit hit is logged with the queue id");
		ok(strstr(logtext, "QID1: rules: cata-raw: pattern hit a "
				   "limit") != NULL,
		   "for each rule");
	}
	close(fd);
	unlink(logpath);
	rules_outcome_free(&o);
	rules_free(rs);
	tmsg_free(&t);
	buf_free(&b);
}

/* Invalid UTF-8 and NUL bytes in subjects and bodies. */
static void
test_hostile(void)
{
	static const char m[] = "Subject: Hi \xff\xfe there \xc3\x28 end\n"
				"Content-Type: text/plain; charset=utf-8\n"
				"\n"
				"abc\0def \xed\xa0\x80 after\n";
	static const struct {
		const char *cond;
		bool want;
	} c[] = {
	    {"subject =~ /there/", true},
	    {"subject =~ /^Hi/", true},
	    {"subject =~ /end$/", true},
	    {"subject =~ /Hi there/", false},
	    {"body =~ /after/", true},
	    {"body =~ /abc\\x00def/", true},
	    {"body.raw =~ /abc\\0def/", true},
	    {"body.raw =~ /def.{1,3}after/", false},
	    {"body =~ /^abc/", true},
	};
	struct tmsg t;
	char errs[512], text[256];

	tmsg_build(&t, m, sizeof(m) - 1);
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct rules_outcome o;
		struct rules *rs;

		snprintf(text, sizeof(text), "rule t { %s => score 1 }",
			 c[i].cond);
		rs = load_str(text, errs, sizeof(errs));
		eval_all(rs, &t, &o);
		ok(rs != NULL && (o.nhits == 1) == c[i].want && !o.limit_hit,
		   "hostile bytes: %s: %s", c[i].cond,
		   c[i].want ? "true" : "false");
		if (o.nhits == 1)
			ok(strchr(o.hits[0].matched, '\0') ==
			       o.hits[0].matched + strlen(o.hits[0].matched),
			   "matched text is a safe string");
		rules_outcome_free(&o);
		rules_free(rs);
	}
	tmsg_free(&t);
}

/* Each syntax error, alone, with its place. */
static void
test_errors(void)
{
	static const struct {
		const char *text, *want;
	} e[] = {
	    {"rule a { hello == \"x\" => score 1 }",
	     ":1:10: unknown target \"hello\""},
	    {"rule a { size =~ /x/ => score 1 }",
	     ":1:15: operator \"=~\" does not apply to size"},
	    {"rule a {\n  subject =~ /ab(c/ => score 1 }",
	     ":2:19: bad regex: missing closing parenthesis"},
	    {"rule a { subject =~ /x/ score 1 }",
	     ":1:25: expected \"=>\" before the actions, got \"score\""},
	    {"rule a { subject == \"abc => score 1 }",
	     ":1:21: unterminated string"},
	    {"rule a { subject =~ /abc => score 1\n}",
	     ":1:21: unterminated regex"},
	    {"rule a { helo == \"x\" => score 1 }\n"
	     "rule a { helo == \"y\" => score 1 }",
	     ":2:6: duplicate rule name \"a\" (first at "},
	    {"rule a { client.ip in 10.0.0.0/33 => score 1 }",
	     ":1:23: bad CIDR \"10.0.0.0/33\""},
	    {"rule a { client.ip in 10.0.0.1, => score 1 }",
	     ":1:33: expected an address range, got \"=>\""},
	    {"rule a { helo == \"x\" => bounce }",
	     ":1:25: unknown action \"bounce\""},
	    {"rule a { helo == \"x\" => }", ":1:25: expected an action, got "
					    "\"}\""},
	    {"rule a { helo =~ /x/q => score 1 }",
	     ":1:21: unknown regex flag 'q'"},
	    {"rule a { size > 10Q => score 1 }",
	     ":1:17: expected a size (K, M, G), got \"10Q\""},
	    {"rule a { helo == \"x\" => reject 450 4.7.1 \"no\" }",
	     ":1:32: bad reply code \"450\": expected 5XX"},
	    {"rule a { helo == \"x\" => reject 550 4.7.1 \"no\" }",
	     ":1:36: expected an enhanced code 5.X.Y, got \"4.7.1\""},
	    {"rule a { helo == \"x\" => reject \"50% off\" }",
	     ":1:32: reply text: write %% for a %"},
	    {"rule a { helo == \"x\" => score many }",
	     ":1:31: expected a number after score, got \"many\""},
	    {"rule a { helo == \"x\" => header \"A B\" \"v\" }",
	     ":1:38: bad header name \"A B\""},
	    {"rule a { helo == \"x\" => accept reject \"no\" }",
	     ":1:32: rule a has two decisive actions"},
	    {"rule a b { helo == \"x\" => score 1 }",
	     ":1:8: expected \"{\", got \"b\""},
	    {"rule a.b { helo == \"x\" => score 1 }",
	     ":1:6: expected a rule name (letters, digits, _ and -), got "
	     "\"a.b\""},
	    {"rule a { virus == \"yes\" => score 1 }",
	     ":1:19: expected true or false, got \"yes\""},
	    {"rule a { header == \"x\" => score 1 }",
	     ":1:17: expected a \"name\" after the target, got an operator"},
	    {"rule a { (helo == \"x\" => score 1 }",
	     ":1:23: expected \")\", got \"=>\""},
	    {"rule a { helo == \"x\" => score 1",
	     ":1:32: expected \"}\", got end of file"},
	    {"junk\nrule a { helo == \"x\" => score 1 }",
	     ":1:1: expected \"rule\", got \"junk\""},
	    {"rule a { helo == x => score 1 }",
	     ":1:18: expected a \"string\", got \"x\""},
	    {"rule a { helo ~ \"x\" => score 1 }",
	     ":1:15: unexpected character '~'"},
	};
	char errs[1024];

	for (size_t i = 0; i < sizeof(e) / sizeof(e[0]); i++) {
		struct rules *rs = load_str(e[i].text, errs, sizeof(errs));

		ok(rs == NULL &&
		       strncmp(errs, e[i].want, strlen(e[i].want)) == 0 &&
		       strchr(errs, '|') == NULL,
		   "error: %s", e[i].want);
		if (rs != NULL || strncmp(errs, e[i].want, strlen(e[i].want)))
			printf("#   got \"%s\"\n", errs);
		rules_free(rs);
	}

	/* A missing file. */
	{
		struct errlist el = {0};
		struct rules *rs;

		ok(rules_load("/nonexistent/x.rules", &rs, &el) == -1 &&
		       rs == NULL && el.n == 1 &&
		       strstr(el.lines[0], "/nonexistent/x.rules: cannot") !=
			   NULL,
		   "a missing file is an error naming it");
		errlist_free(&el);
	}
}

/* Reads a whole file of the source tree. */
static char *
slurp_src(const char *rel)
{
	char path[1024];
	struct buf b = {0};
	char chunk[4096];
	size_t n;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", srcdir(), rel);
	if ((fp = fopen(path, "r")) == NULL)
		return NULL;
	buf_append(&b, "", 0);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_append(&b, chunk, n);
	fclose(fp);
	return b.data;
}

/* The golden files of tests/data/rules. */
static void
test_golden(void)
{
	struct rules *rs;
	char errs[4096], *ref;
	struct tmsg t;
	struct rules_outcome o;

	rs = load_src("tests/data/rules/all.rules", errs, sizeof(errs));
	ok(rs != NULL, "all.rules loads (%s)", errs);
	ok(rs != NULL && rules_earliest_needed(rs) == RULES_CONNECT,
	   "all.rules: earliest needed is CONNECT (conn-ip)");
	rules_free(rs);

	rs = load_src("tests/data/rules/dir", errs, sizeof(errs));
	ok(rs != NULL, "a folder loads (%s)", errs);
	tmsg_build(&t, "Subject: two one\n\nx\n", 20);
	eval_all(rs, &t, &o);
	ok(o.nhits == 2 && !strcmp(o.hits[0].name, "first") &&
	       !strcmp(o.hits[1].name, "second") && o.score == 3,
	   "its *.rules files are read in name order");
	rules_outcome_free(&o);
	tmsg_free(&t);
	rules_free(rs);

	/* Every error of bad.rules, in order, as bad.ref has them. */
	rs = load_src("tests/data/rules/bad.rules", errs, sizeof(errs));
	ref = slurp_src("tests/data/rules/bad.ref");
	ok(rs == NULL && ref != NULL, "bad.rules fails");
	if (ref != NULL) {
		for (char *p = ref; *p != '\0'; p++)
			if (*p == '\n')
				*p = p[1] != '\0' ? '|' : '\0';
		is_str(errs, ref, "bad.rules errors match bad.ref");
	}
	free(ref);
}

static const char exe_msg[] =
    "From: someone@example.net\n"
    "Subject: invoice\n"
    "Date: Thu, 3 Dec 2026 10:00:00 +0000\n"
    "Message-ID: <2@example.net>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"zz\"\n"
    "\n"
    "--zz\n"
    "Content-Type: text/plain\n"
    "\n"
    "see attached\n"
    "--zz\n"
    "Content-Type: application/octet-stream\n"
    "Content-Disposition: attachment;\n"
    " filename*=UTF-8''invoice%2Epdf%2Eexe\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    "--zz--\n";

static const char gtube_msg[] =
    "From: someone@example.net\n"
    "Subject: test\n"
    "Date: Thu, 3 Dec 2026 10:00:00 +0000\n"
    "Message-ID: <3@example.net>\n"
    "\n"
    "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n";

static const char clean_msg[] = "From: someone@example.net\n"
				"Subject: lunch\n"
				"Date: Thu, 3 Dec 2026 10:00:00 +0000\n"
				"Message-ID: <4@example.net>\n"
				"\n"
				"At noon?\n";

/* The shipped rules. */
static void
test_baseline(void)
{
	struct rules *rs;
	char errs[2048];
	struct tmsg t;
	struct rules_outcome o;

	rs = load_src("rules/baseline.rules", errs, sizeof(errs));
	ok(rs != NULL, "rules/baseline.rules loads (%s)", errs);
	if (rs == NULL)
		return;

	tmsg_build(&t, exe_msg, sizeof(exe_msg) - 1);
	eval_all(rs, &t, &o);
	ok(o.decided && o.action == ACT_REJECT && !strcmp(o.rcode, "550") &&
	       !strcmp(o.xcode, "5.7.1") &&
	       !strcmp(o.rule, "executable-attachment") &&
	       strstr(o.text, "executable") != NULL,
	   "an .exe attachment is rejected (%s)", o.rule ? o.rule : "");
	is_str(o.nhits ? o.hits[o.nhits - 1].matched : "", ".exe",
	       "the hit names what matched");
	rules_outcome_free(&o);
	tmsg_free(&t);

	tmsg_build(&t, gtube_msg, sizeof(gtube_msg) - 1);
	eval_all(rs, &t, &o);
	ok(!o.decided && o.score >= 1000 && o.nhits == 1 &&
	       !strcmp(o.hits[0].name, "gtube"),
	   "GTUBE scores 1000 (%g)", o.score);
	rules_outcome_free(&o);
	tmsg_free(&t);

	tmsg_build(&t, clean_msg, sizeof(clean_msg) - 1);
	eval_all(rs, &t, &o);
	ok(!o.decided && o.score == 0 && o.nhits == 0,
	   "a plain message matches nothing");
	rules_outcome_free(&o);
	tmsg_free(&t);
	rules_free(rs);
}

/* 8 threads evaluate one rule set on their own messages at once. */
struct thr {
	const struct rules *rs;
	int bad;
};

static void *
thr_run(void *arg)
{
	struct thr *th = arg;
	struct tmsg t;

	tmsg_build(&t, msg1, sizeof(msg1) - 1);
	for (int i = 0; i < 200; i++) {
		struct rules_outcome o;

		eval_all(th->rs, &t, &o);
		if (!o.decided || o.action != ACT_QUARANTINE || o.nhits != 4 ||
		    o.score != 4.5 || strcmp(o.hits[0].matched, "Caf\xc3\xa9"))
			th->bad++;
		rules_outcome_free(&o);
	}
	tmsg_free(&t);
	return NULL;
}

static void
test_threads(void)
{
	pthread_t tid[8];
	struct thr th[8];
	char errs[512];
	struct rules *rs = load_str(
	    "rule a { subject =~ /caf./i => score 1 }\n"
	    "rule b { from.name =~ /bank/i and header \"X-Enc\" =~ /caf/ "
	    "=> score 1 }\n"
	    "rule c { body =~ /(w+)+orld/ => score 1.5 }\n"
	    "rule d { attachment.name =~ /\\.exe$/ => quarantine \"exe\" "
	    "score 1 }\n",
	    errs, sizeof(errs));
	int bad = 0;

	ok(rs != NULL, "thread rules load (%s)", errs);
	for (int i = 0; i < 8; i++) {
		th[i].rs = rs;
		th[i].bad = 0;
		pthread_create(&tid[i], NULL, thr_run, &th[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(tid[i], NULL);
		bad += th[i].bad;
	}
	ok(bad == 0, "8 threads x 200 evaluations agree (%d bad)", bad);
	rules_free(rs);
}

/* Writes N tests joined by SEP after HEAD, then TAIL; returns the text. */
static char *
chain(const char *head, const char *test, const char *sep, const char *last,
      int n, const char *tail)
{
	struct buf b = {0};

	buf_printf(&b, "%s", head);
	for (int i = 0; i < n - 1; i++)
		buf_printf(&b, "%s%s", test, sep);
	buf_printf(&b, "%s%s", last, tail);
	return b.data;
}

/*
 * Long chains of and and or: up to 1000 tests a rule they load and are
 * evaluated as written; past it the rule is an error naming its place,
 * however long the chain (400,000 tests once overflowed the stack in the
 * daemon at the first message, 1,000,000 already at load).
 */
static void
test_chains(void)
{
	static const char grp[] = "(subject =~ /x/ or not helo == \"y\") and ";
	struct tmsg t;
	struct rules_outcome o;
	struct rules *rs;
	char errs[1024], want[128], *text;
	uint64_t t0;

	tmsg_build(&t, msg1, sizeof(msg1) - 1);

	/*
	 * 1000 tests, one a line: all true (only the last notes a text),
	 * then all but the last.
	 */
	text = chain("rule long {\n", "not subject =~ /zzz/", " and\n",
		     "body =~ /w.rld/", 1000, " => reject \"x\" }\n");
	rs = load_str(text, errs, sizeof(errs));
	free(text);
	ok(rs != NULL, "an and of 1000 tests loads (%s)", errs);
	eval_all(rs, &t, &o);
	ok(o.decided && o.action == ACT_REJECT && o.nhits == 1 &&
	       !strcmp(o.hits[0].matched, "world"),
	   "and of 1000: holds, its last test's text kept (%s)",
	   o.nhits ? o.hits[0].matched : "");
	rules_outcome_free(&o);
	rules_free(rs);
	text = chain("rule long {\n", "subject =~ /Caf/", " and\n",
		     "body =~ /nomatch/", 1000, " => reject \"x\" }\n");
	rs = load_str(text, errs, sizeof(errs));
	free(text);
	eval_all(rs, &t, &o);
	ok(rs != NULL && !o.decided && o.nhits == 0,
	   "and of 1000: false when only the last test is");
	rules_outcome_free(&o);
	rules_free(rs);

	/* An or of 1000: only the last test holds. */
	text = chain("rule long { ", "subject =~ /nomatch/", " or ",
		     "subject =~ /Caf./", 1000, " => score 2 }\n");
	rs = load_str(text, errs, sizeof(errs));
	free(text);
	ok(rs != NULL, "an or of 1000 tests loads (%s)", errs);
	eval_all(rs, &t, &o);
	ok(o.nhits == 1 && o.score == 2 &&
	       !strcmp(o.hits[0].matched, "Caf\xc3\xa9"),
	   "or of 1000: holds by its last test, whose text is kept");
	rules_outcome_free(&o);
	rules_free(rs);

	/* and over or, parentheses and not: 500 groups of 2 tests. */
	text = chain("rule long { ", grp, "",
		     "(subject =~ /x/ or not helo == \"mx.example.org\")", 500,
		     " => score 1 }\n");
	rs = load_str(text, errs, sizeof(errs));
	free(text);
	eval_all(rs, &t, &o);
	ok(rs != NULL && o.nhits == 0,
	   "1000 tests in groups: false by the last group (%s)", errs);
	rules_outcome_free(&o);
	rules_free(rs);
	text =
	    chain("rule long { ", grp, "", "(subject =~ /x/ or helo != \"y\")",
		  500, " => score 1 }\n");
	rs = load_str(text, errs, sizeof(errs));
	free(text);
	eval_all(rs, &t, &o);
	ok(rs != NULL && o.nhits == 1, "1000 tests in groups: true (%s)", errs);
	rules_outcome_free(&o);
	rules_free(rs);

	/* The limit is per rule: two rules of 1000 each. */
	{
		char *a = chain("rule a { ", "helo =~ /mx/", " and ",
				"helo =~ /mx/", 1000, " => score 1 }\n");
		char *b = chain("rule b { ", "helo =~ /zz/", " or ",
				"helo =~ /mx/", 1000, " => score 2 }\n");
		struct buf both = {0};

		buf_printf(&both, "%s%s", a, b);
		rs = load_str(both.data, errs, sizeof(errs));
		eval_all(rs, &t, &o);
		ok(rs != NULL && o.nhits == 2 && o.score == 3,
		   "two rules of 1000 tests each load and hold (%s)", errs);
		rules_outcome_free(&o);
		rules_free(rs);
		free(a);
		free(b);
		buf_free(&both);
	}

	/* 1001 tests: the 1001st is named. */
	text = chain("rule long {\n", "subject =~ /Caf/", " and\n",
		     "subject =~ /Caf/", 1001, " => reject \"x\" }\n");
	rs = load_str(text, errs, sizeof(errs));
	free(text);
	is_str(rs == NULL ? errs : "(loaded)",
	       ":1002:1: condition has more than 1000 tests",
	       "an and of 1001 tests is an error at the 1001st");
	rules_free(rs);
	text = chain("rule long { ", "helo =~ /zz/", " or ", "helo =~ /mx/",
		     1001, " => score 1 }\n");
	rs = load_str(text, errs, sizeof(errs));
	free(text);
	snprintf(
	    want, sizeof(want), ":1:%zu: condition has more than 1000 tests",
	    strlen("rule long { ") + 1000 * strlen("helo =~ /zz/ or ") + 1);
	is_str(rs == NULL ? errs : "(loaded)", want,
	       "an or of 1001 tests is an error at the 1001st");
	rules_free(rs);

	/* Tests in parentheses and under not count too. */
	text = chain("rule long { ", grp, "", "subject =~ /x/", 501,
		     " => score 1 }\n");
	rs = load_str(text, errs, sizeof(errs));
	free(text);
	snprintf(want, sizeof(want),
		 ":1:%zu: condition has more than 1000 tests",
		 strlen("rule long { ") + 500 * strlen(grp) + 1);
	is_str(rs == NULL ? errs : "(loaded)", want,
	       "tests within parentheses and under not count");
	rules_free(rs);

	/* The rule after one over the limit is still read. */
	text =
	    chain("rule long { ", "helo =~ /zz/", " and ", "helo =~ /mx/", 1001,
		  " => score 1 }\nrule b { hello == \"x\" => score 1 }\n");
	rs = load_str(text, errs, sizeof(errs));
	free(text);
	ok(rs == NULL &&
	       strstr(errs, "more than 1000 tests|:2:10: unknown target") !=
		   NULL,
	   "the next rule's error is reported too (%s)", errs);
	rules_free(rs);

	/* 400,000 tests: an error, quickly, and no crash. */
	text = chain("rule longand { ", "subject =~ /a/", " and ",
		     "subject =~ /a/", 400000, " => reject \"x\" }\n");
	t0 = util_now_ms();
	rs = load_str(text, errs, sizeof(errs));
	t0 = util_now_ms() - t0;
	free(text);
	is_str(rs == NULL ? errs : "(loaded)",
	       ":1:19016: condition has more than 1000 tests",
	       "an and of 400,000 tests is refused");
	ok(t0 < 5000, "and refused quickly (%llu ms)", (unsigned long long)t0);
	if (rs != NULL) {
		/* Before the limit, this is where the daemon crashed. */
		eval_all(rs, &t, &o);
		rules_outcome_free(&o);
	}
	rules_free(rs);
	tmsg_free(&t);
}

/* Headers that are edmilter's say what edmilter did: no rule adds them. */
static void
test_reserved(void)
{
	static const char *names[] = {"X-Edmilter-Unchecked", "x-edmilter-x",
				      "X-Virus-Status", "X-Spam-Flag",
				      "Authentication-Results"};
	char text[200], errs[1024];
	struct rules *rs;

	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		snprintf(text, sizeof(text),
			 "rule h { helo =~ /./ => header \"%s\" \"x\" }\n",
			 names[i]);
		rs = load_str(text, errs, sizeof(errs));
		ok(rs == NULL && strstr(errs, "is not a rule's to add") != NULL,
		   "a rule may not add %s", names[i]);
		rules_free(rs);
	}
}

int
main(void)
{
	log_init("unit_rules", LOG_MAIL, 1);
	mime_init();
	test_errors();
	test_chains();
	test_reserved();
	test_golden();
	test_targets();
	test_matched();
	test_actions();
	test_stages();
	test_limits();
	test_hostile();
	test_baseline();
	test_threads();
	return tap_done();
}
