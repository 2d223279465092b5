/*
 * fuzz_msg.c: the input as a message file. msg_parse fills a struct msg
 * as the offline scanner does; mime_parse decodes what it kept (from
 * raw_start, as the rules see it) under the default configuration's
 * limits; dmarc_from_domains reads the From headers and authres_id every
 * header value, as the DMARC check and the Authentication-Results
 * handling do.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "authres.h"
#include "dmarc.h"
#include "fuzz_common.h"
#include "mime.h"
#include "msg.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet_log();
	mime_init();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The defaults of MIMEMaxDepth, MIMEMaxParts, MIMEMaxDecodedSize. */
	const struct mime_limits lim = {30, 1000, 50 * 1024 * 1024};
	char doms[DMARC_MAX_FROM][256], id[256], small[8];
	struct mime_result r;
	struct msg m;
	bool unusable;
	int n;

	msg_init(&m, 50 * 1024 * 1024);
	msg_parse(&m, (const char *)data, size);
	FUZZ_CHECK(m.in_body && m.body_start >= m.raw_start &&
		   m.body_start <= m.raw.len);
	FUZZ_CHECK(!m.truncated && m.raw.len >= m.raw_start);

	memset(&r, 0, sizeof(r));
	if (mime_parse(m.raw.data + m.raw_start, m.raw.len - m.raw_start, &lim,
		       &r) < 0)
		FUZZ_CHECK(r.error != NULL);
	FUZZ_CHECK(r.nparts <= lim.parts);
	for (size_t i = 0; i < r.nparts; i++) {
		FUZZ_CHECK(r.parts[i].type != NULL);
		(void)strlen(r.parts[i].type);
		if (r.parts[i].name != NULL)
			(void)strlen(r.parts[i].name);
		FUZZ_CHECK(r.parts[i].depth >= 0 &&
			   r.parts[i].depth <= lim.depth);
	}
	FUZZ_CHECK(!r.limited || r.limit != NULL);
	mime_result_free(&r);

	n = dmarc_from_domains(&m, doms, DMARC_MAX_FROM, &unusable);
	FUZZ_CHECK(n >= 0 && n <= DMARC_MAX_FROM + 1);
	for (int i = 0; i < n && i < DMARC_MAX_FROM; i++)
		FUZZ_CHECK(doms[i][0] != '\0' && strlen(doms[i]) < 256);

	for (size_t i = 0; i < m.nhdrs; i++) {
		if (authres_id(m.hdrs[i].value, id, sizeof(id)) == 0)
			FUZZ_CHECK(id[0] != '\0' && strlen(id) < sizeof(id));
		if (authres_id(m.hdrs[i].value, small, sizeof(small)) == 0)
			FUZZ_CHECK(strlen(small) < sizeof(small));
	}
	(void)msg_header_count(&m, "From");
	(void)msg_header(&m, "Authentication-Results");
	msg_free(&m);
	return 0;
}
