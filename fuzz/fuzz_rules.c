/*
 * fuzz_rules.c: rules_load on the input as a rules file, then, when it
 * loads, rules_eval at every stage over a fixed message (built once as
 * the milter builds it: envelope, headers, MIME body with an attachment),
 * RCPT once per recipient, as tests/unit_rules.c and the milter do.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "mime.h"
#include "msg.h"
#include "rules.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fixed_msg[] =
    "From: \"Bank Support\" <support@bank.example.net>\n"
    "To: Alice <a@example.com>, postmaster@example.com\n"
    "Subject: =?UTF-8?B?WW91ciBhY2NvdW50?= newsletter\n"
    "Date: Thu, 03 Dec 2026 10:00:00 +0000\n"
    "Message-ID: <fuzz.1@bank.example.net>\n"
    "X-Spam: yes\n"
    "X-Folded: one\n two\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"b1\"\n"
    "\n"
    "--b1\n"
    "Content-Type: multipart/alternative; boundary=\"b2\"\n"
    "\n"
    "--b2\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Please verify your account: http://bank.example.net/foo =E2=82=AC\n"
    "--b2\n"
    "Content-Type: text/html\n"
    "\n"
    "<p>Please <b>verify</b> &amp; bar</p>\n"
    "--b2--\n"
    "--b1\n"
    "Content-Type: application/octet-stream; name=\"invoice.exe\"\n"
    "Content-Disposition: attachment; filename=\"invoice.exe\"\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\n"
    "--b1--\n";

static struct msg fm;
static struct mime_result fmr;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet_log();
	mime_init();
	msg_init(&fm, 1024 * 1024);
	msg_set_client(&fm, "192.0.2.10", "host.dynamic.example.net");
	msg_set_helo(&fm, "mx.example.org");
	msg_set_macro(&fm, "{daemon_name}", "smtpd");
	msg_set_macro(&fm, "{auth_authen}", "alice");
	msg_set_from(&fm, "<bounce@list.example>");
	msg_add_rcpt(&fm, "<a@example.com>");
	msg_add_rcpt(&fm, "<postmaster@example.com>");
	snprintf(fm.qid, sizeof(fm.qid), "FUZZ1");
	msg_parse(&fm, fixed_msg, sizeof(fixed_msg) - 1);
	mime_parse(fm.raw.data + fm.raw_start, fm.raw.len - fm.raw_start, NULL,
		   &fmr);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errlist errs = {0};
	struct rules *rs = NULL;
	struct rules_input in = {0};
	struct rules_outcome o;
	int rc;

	rc = rules_load(fuzz_file(data, size), &rs, &errs);
	FUZZ_CHECK((rc == 0) == (rs != NULL));
	FUZZ_CHECK(rc == 0 || errs.n > 0);
	errlist_free(&errs);
	if (rs == NULL)
		return 0;

	(void)rules_earliest_needed(rs);
	in.m = &fm;
	in.virus = size > 0 && (data[0] & 1); /* as the input says */
	in.virus_name = in.virus ? "Edmilter.Test.Eicar" : NULL;
	in.spf = "fail";
	in.dkim = "pass";
	in.dmarc = "none";
	memset(&o, 0, sizeof(o));
	for (int s = RULES_CONNECT; s <= RULES_EOM; s++) {
		if (s == RULES_EOM)
			in.mime = &fmr;
		if (s != RULES_RCPT) {
			rules_eval(rs, (enum rules_stage)s, &in, &o, fm.qid);
			continue;
		}
		for (size_t i = 0; i < fm.nrcpts; i++) {
			in.rcpt = fm.rcpts[i];
			rules_eval(rs, RULES_RCPT, &in, &o, fm.qid);
		}
		in.rcpt = NULL;
	}
	FUZZ_CHECK(o.nhits == 0 || o.hits != NULL);
	for (size_t i = 0; i < o.nhits; i++)
		FUZZ_CHECK(o.hits[i].name != NULL &&
			   memchr(o.hits[i].matched, '\0',
				  sizeof(o.hits[i].matched)) != NULL);
	FUZZ_CHECK(memchr(o.text, '\0', sizeof(o.text)) != NULL);
	rules_outcome_free(&o);
	rules_free(rs);
	return 0;
}
