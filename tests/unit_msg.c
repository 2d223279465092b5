/*
 * unit_msg.c: message assembly, safe strings, and the pipeline's verdicts
 * with the real libclamav engine on the project's test signatures.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipe.h"
#include "tap.h"

static const char *
body_of(const struct msg *m)
{
	return m->raw.data + m->body_start;
}

/* The index-th header op, as "kind name index value". */
static void op_str(const struct verdict *v, size_t i, char *out, size_t len);

/* Is there an op "kind name value" (the index left out)? */
static bool
has_op(const struct verdict *v, const char *want)
{
	static const char *k[] = {"add", "insert", "change", "delete"};
	char s[1200];

	for (size_t i = 0; i < v->nops; i++) {
		snprintf(s, sizeof(s), "%s %s %s", k[v->ops[i].kind],
			 v->ops[i].name,
			 v->ops[i].value ? v->ops[i].value : "-");
		if (strcmp(s, want) == 0)
			return true;
	}
	return false;
}

/* The index-th header op, as "kind name index value". */
static void
op_str(const struct verdict *v, size_t i, char *out, size_t len)
{
	static const char *k[] = {"add", "insert", "change", "delete"};
	const struct hdrop *op = &v->ops[i];

	snprintf(out, len, "%s %s %d %s", k[op->kind], op->name, op->index,
		 op->value ? op->value : "-");
}

static void
test_assembly(void)
{
	struct msg m;
	const char *in = "From someone@example.com Mon Jan 1 00:00:00 2024\n"
			 "Subject: hello\n\tworld  \n"
			 "X-Folded:  a\n b\n"
			 "To: <r@example.net>\n"
			 "\n"
			 "line 1\nline 2\r\nno end";

	msg_init(&m, 1 << 20);
	msg_parse(&m, in, strlen(in));
	ok(m.nhdrs == 3, "three headers, the mbox line is none");
	is_str(m.hdrs[0].name, "Subject", "first header name");
	is_str(m.hdrs[0].raw, " hello\n\tworld  ",
	       "raw value keeps the space and the LF fold");
	is_str(m.hdrs[0].value, "hello\tworld", "unfolded value");
	is_str(m.hdrs[1].value, "a b", "second fold unfolds to one space");
	is_str(body_of(&m), "line 1\r\nline 2\r\nno end",
	       "body lines end in CRLF");
	is_str(m.raw.data + m.raw_start - 25,
	       "Received: from edmilter\r\n"
	       "Subject: hello\r\n\tworld  \r\n"
	       "X-Folded:  a\r\n b\r\n"
	       "To: <r@example.net>\r\n\r\n"
	       "line 1\r\nline 2\r\nno end",
	       "the scanned copy starts with a Received header of ours, "
	       "never an mbox line (a body line could split it)");
	is_str(m.raw.data + m.raw_start,
	       "Subject: hello\r\n\tworld  \r\nX-Folded:  a\r\n b\r\n"
	       "To: <r@example.net>\r\n\r\nline 1\r\nline 2\r\nno end",
	       "the message is rebuilt byte for byte with CRLF");
	ok(msg_header_count(&m, "subject") == 1, "header count ignores case");
	ok(msg_header(&m, "x-folded") == &m.hdrs[1], "header lookup");

	/* Connection data survives a reset, the message does not. */
	msg_set_client(&m, "192.0.2.1", "client.example.com");
	msg_set_helo(&m, "client.example.com");
	msg_set_from(&m, " <a@example.com> ");
	msg_add_rcpt(&m, "<b@example.net>");
	is_str(m.from, "a@example.com", "envelope sender without <>");
	is_str(m.rcpts[0], "b@example.net", "recipient without <>");
	msg_set_from(&m, "<>");
	is_str(m.from, "", "the null sender is empty");
	msg_reset(&m);
	ok(m.nhdrs == 0 && m.nrcpts == 0 && m.size == 0 && !m.in_body,
	   "reset forgets the message");
	is_str(m.helo, "client.example.com", "reset keeps the HELO");
	is_str(m.client_addr, "192.0.2.1", "reset keeps the client");
	msg_free(&m);
}

static void
test_parse_odd(void)
{
	struct msg m;
	const char *in = "From : a@example.com\nSubject\t: x\nBad Name: y\n"
			 "\nbody\n";

	msg_init(&m, 1 << 20);
	msg_parse(&m, in, strlen(in));
	ok(m.nhdrs == 2, "\"Name :\" is a header, as to Postfix (%zu)",
	   m.nhdrs);
	is_str(m.nhdrs > 0 ? m.hdrs[0].name : "", "From",
	       "the space before the colon is dropped");
	is_str(m.nhdrs > 1 ? m.hdrs[1].value : "", "x", "tab too");
	ok(strstr(body_of(&m), "Bad Name: y") == body_of(&m),
	   "a name with a space inside starts the body");
	msg_free(&m);
}

static void
test_limit(void)
{
	struct msg m;
	char big[4096];

	memset(big, 'x', sizeof(big));
	msg_init(&m, 1024);
	msg_add_header(&m, "Subject", " big");
	msg_add_body(&m, big, sizeof(big));
	ok(m.truncated, "a message over the limit is marked cut");
	ok(m.raw.len - m.raw_start == 1024, "kept exactly the limit");
	ok(m.size == 4096 + strlen("Subject: big\r\n\r\n"),
	   "size counts every byte seen (%zu)", m.size);
	msg_free(&m);
}

static void
test_safe(void)
{
	char out[16];
	struct verdict v = {0};

	util_safe(out, sizeof(out), "a\r\nb\tc\x7f", false);
	is_str(out, "a??b?c?", "control bytes become ?");
	util_safe(out, sizeof(out), "x y\"z", true);
	is_str(out, "x_y_z", "no spaces or quotes for log tokens");
	util_safe(out, sizeof(out), "0123456789abcdefghij", false);
	is_str(out, "0123456789ab...", "long values are cut and marked");
	verdict_reply(&v, "550", "5.7.0", "100% bad\r\nInjected: yes");
	is_str(v.text, "100% bad??Injected: yes",
	       "a reply cannot carry CR or LF; a percent stays plain text");
}

/* A message carrying the test program, as a mail client sends it. */
static const char infected[] =
    "From: a@example.com\r\nTo: b@example.net\r\nSubject: test\r\n"
    "X-Virus-Status: Clean\r\nX-Virus-Status: Clean too\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain\r\n\r\n"
    "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!"
    "$H+H*\r\n";

static const char tagged[] =
    "From: a@example.com\r\nSubject: =?utf-8?q?Invoice?=\r\n\t12345\r\n"
    "\r\n"
    "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!"
    "$H+H*\r\n";

static void
test_pipe(void)
{
	struct errlist errs = {0};
	struct snap *s;
	struct pipe_report r;
	struct msg m;
	char conf[256], path[512], op[600];
	const char *src = getenv("SRCDIR");
	FILE *fp;

	snprintf(path, sizeof(path), "/tmp/edm-unit-msg.%d.conf", getpid());
	snprintf(conf, sizeof(conf), "%s/tests/data/sigs", src ? src : ".");
	fp = fopen(path, "w");
	fprintf(fp,
		"ClamAVDatabase %s\nTemporaryDirectory /tmp\n"
		"AuthChecks no\n"
		"RejectMessage virus %%v here, 100%%%% sure\n",
		conf);
	fclose(fp);
	ok(snap_build(path, NULL, &s, &errs) == 0 && s->av != NULL,
	   "the test database loads (%s)", s ? s->av_error : "no conf");
	if (s == NULL || s->av == NULL)
		return;

	msg_init(&m, 1 << 20);
	msg_parse(&m, infected, sizeof(infected) - 1);
	pipe_run(s, &m, NULL, &r);
	ok(r.av.status == AV_INFECTED, "EICAR is found");
	is_str(r.av.name, "Edmilter.Test.Eicar.UNOFFICIAL", "signature name");
	ok(r.verdict.action == ACT_REJECT, "default action is reject");
	is_str(r.verdict.rcode, "550", "reply code");
	is_str(r.verdict.xcode, "5.7.0", "enhanced code");
	is_str(r.verdict.text,
	       "virus Edmilter.Test.Eicar.UNOFFICIAL here, 100% sure",
	       "RejectMessage with %%v expanded");
	ok(r.verdict.nops == 4, "four header changes (%zu)", r.verdict.nops);
	op_str(&r.verdict, 0, op, sizeof(op));
	is_str(op, "delete X-Virus-Status 2 -",
	       "incoming status headers deleted from the last");
	op_str(&r.verdict, 1, op, sizeof(op));
	is_str(op, "delete X-Virus-Status 1 -", "then the first");
	op_str(&r.verdict, 3, op, sizeof(op));
	is_str(op,
	       "add X-Virus-Status 0 Infected (Edmilter.Test.Eicar."
	       "UNOFFICIAL)",
	       "our status header");
	pipe_report_free(&r);

	/* A clean message. */
	msg_reset(&m);
	msg_parse(&m, "Subject: hi\n\nhello\n", 19);
	pipe_run(s, &m, NULL, &r);
	ok(r.av.status == AV_CLEAN && r.verdict.action == ACT_ACCEPT &&
	       r.verdict.rcode[0] == '\0',
	   "clean mail is accepted with no reply");
	op_str(&r.verdict, 1, op, sizeof(op));
	is_str(op, "add X-Virus-Status 0 Clean", "Clean status header");
	pipe_report_free(&r);

	/* Tagging keeps the Subject's fold and encoded word whole. */
	s->conf->on_infected = ACT_TAG;
	msg_reset(&m);
	msg_parse(&m, tagged, sizeof(tagged) - 1);
	pipe_run(s, &m, NULL, &r);
	ok(r.verdict.action == ACT_TAG, "OnInfected tag: tag");
	op_str(&r.verdict, r.verdict.nops - 1, op, sizeof(op));
	is_str(op, "change Subject 1 [VIRUS] =?utf-8?q?Invoice?=\n\t12345",
	       "the tag goes before the raw Subject, fold and all");
	pipe_report_free(&r);
	s->conf->on_infected = ACT_REJECT;

	/* Cut at the limit: not scanned whole, so OnOversize. */
	msg_free(&m);
	msg_init(&m, 1024);
	for (int i = 0; i < 100; i++)
		msg_add_body(&m, "0123456789012345678901234567890\r\n", 33);
	pipe_run(s, &m, NULL, &r);
	ok(r.av.status == AV_ERROR && r.av.failure == AVF_OVERSIZE &&
	       r.verdict.action == ACT_REJECT,
	   "a message over MaxMessageSize is rejected (OnOversize default)");
	is_str(r.verdict.rcode, "550", "with a 550");
	is_str(r.verdict.xcode, "5.3.4", "5.3.4: too big");
	ok(r.nfb == 1 && r.fb[0].kind == FB_OVERSIZE, "one fallback noted");
	pipe_report_free(&r);

	/* OnOversize accept: delivered, saying what was not checked. */
	s->conf->on_oversize = ACT_ACCEPT;
	pipe_run(s, &m, NULL, &r);
	ok(r.verdict.action == ACT_ACCEPT, "OnOversize accept: accepted");
	ok(has_op(&r.verdict, "add X-Edmilter-Unchecked clamav/oversize: "
			      "message over MaxMessageSize (1024 bytes), "
			      "only its beginning scanned"),
	   "OnOversize accept: X-Edmilter-Unchecked says why");
	pipe_report_free(&r);

	/* ... but what was kept is scanned: a virus in it is found. */
	msg_free(&m);
	msg_init(&m, 1024);
	msg_add_header(&m, "Subject", " x");
	msg_end_headers(&m);
	msg_add_body(&m, "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-"
			 "ANTIVIRUS-TEST-FILE!$H+H*\r\n",
		     70);
	for (int i = 0; i < 100; i++)
		msg_add_body(&m, "0123456789012345678901234567890\r\n", 33);
	pipe_run(s, &m, NULL, &r);
	ok(m.truncated && r.av.status == AV_INFECTED &&
	       r.verdict.action == ACT_REJECT,
	   "OnOversize accept: a virus in the kept part is still rejected");
	pipe_report_free(&r);
	s->conf->on_oversize = ACT_REJECT;

	/* An internal error: OnInternalError, tempfail by default. */
	msg_reset(&m);
	msg_add_header(&m, "Subject", " x");
	msg_end_headers(&m);
	m.failed = xstrdup("out of memory for the message");
	pipe_run(s, &m, NULL, &r);
	ok(r.verdict.action == ACT_TEMPFAIL && r.av.failure == AVF_INTERNAL,
	   "an internal error is tempfailed (OnInternalError default)");
	is_str(r.verdict.text, "temporary local problem, try again later",
	       "with its reply");
	pipe_report_free(&r);
	s->conf->on_internal_error = ACT_REJECT;
	pipe_run(s, &m, NULL, &r);
	is_str(r.verdict.xcode, "5.3.0", "OnInternalError reject: 5.3.0");
	pipe_report_free(&r);
	s->conf->on_internal_error = ACT_TEMPFAIL;

	/* Header and recipient limits. */
	msg_reset(&m);
	m.max_headers = 3;
	for (int i = 0; i < 5; i++)
		msg_add_header(&m, "X-Many", " y");
	msg_end_headers(&m);
	pipe_run(s, &m, NULL, &r);
	is_str(m.over_headers, "more than 3 header fields",
	       "MaxHeaders: the first limit passed is noted");
	ok(r.verdict.action == ACT_REJECT &&
	       strcmp(r.verdict.xcode, "5.6.0") == 0,
	   "OnHeaderLimit default: reject 5.6.0");
	pipe_report_free(&r);
	msg_reset(&m);
	m.max_headers = 0;
	m.max_header_size = 20;
	msg_add_header(&m, "Subject", " 0123456789012345678901234567890");
	msg_end_headers(&m);
	is_str(m.over_headers, "header field Subject of 40 bytes, over 20",
	       "MaxHeaderSize: named with its size");
	m.max_header_size = 0;
	msg_reset(&m);
	ok(m.over_headers == NULL, "reset forgets the header limit");
	for (int i = 0; i < 3; i++)
		msg_add_rcpt(&m, "<a@example.net>");
	s->conf->max_recipients = 2;
	s->conf->on_recipient_limit = ACT_QUARANTINE;
	msg_end_headers(&m);
	pipe_run(s, &m, NULL, &r);
	ok(r.verdict.action == ACT_QUARANTINE,
	   "OnRecipientLimit quarantine: 3 recipients over 2 held");
	pipe_report_free(&r);
	s->conf->max_recipients = 1000;
	msg_free(&m);
	snap_put(s);

	/* No database: never accepted unscanned. */
	fp = fopen(path, "w");
	fprintf(fp, "ClamAVDatabase /nonexistent\nTemporaryDirectory /tmp\n"
		    "AuthChecks no\n");
	fclose(fp);
	ok(snap_build(path, NULL, &s, &errs) == 0 && s->av == NULL &&
	       strstr(s->av_error, "/nonexistent") != NULL,
	   "a missing database leaves no engine and says why");
	msg_init(&m, 1 << 20);
	msg_parse(&m, "Subject: hi\n\nhello\n", 19);
	pipe_run(s, &m, NULL, &r);
	ok(r.verdict.action == ACT_TEMPFAIL, "no engine: tempfail");
	is_str(r.verdict.xcode, "4.3.0", "enhanced code 4.3.0");
	pipe_report_free(&r);
	msg_free(&m);
	snap_put(s);
	unlink(path);
	errlist_free(&errs);
}

int
main(void)
{
	char err[256];

	test_assembly();
	test_parse_odd();
	test_limit();
	test_safe();
	if (av_global_init(err, sizeof(err)) == 0)
		test_pipe();
	else
		ok(0, "libclamav init: %s", err);
	return tap_done();
}
