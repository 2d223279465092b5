/*
 * fuzz_milter.c: the message assembly the milter callbacks do (mlfi.c),
 * driven by the input as a sequence of operations on one connection's
 * struct msg, with the msg_* calls the callbacks make.
 *
 * Input: one byte that sets the size limit (MaxMessageSize) to
 * 64 << (byte % 16) bytes, then operations until the input ends. Each is
 * an op byte (taken modulo 10) and its arguments; a string is a length
 * byte and that many bytes (cut at the input's end, NULs end it as for the
 * C strings libmilter passes), a chunk is a 2-byte little-endian length
 * and that many bytes:
 *   0 client ADDR NAME   4 rcpt ADDR          8 reset (end of message)
 *   1 helo NAME          5 header NAME VALUE  9 end of message: checks
 *   2 macro NAME VALUE   6 end of headers
 *   3 from ADDR          7 body CHUNK
 * Header values are passed with their leading space, as with
 * SMFIP_HDR_LEADSPC; an op byte >= 128 passes it without one, as
 * mlfi_header then adds it back.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "msg.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
	const uint8_t *p, *end;
};

/* A string argument, NUL-terminated; free it. */
static char *
get_str(struct input *in)
{
	size_t n = 0;
	char *s;

	if (in->p < in->end)
		n = *in->p++;
	if (n > (size_t)(in->end - in->p))
		n = (size_t)(in->end - in->p);
	s = xmalloc(n + 1);
	memcpy(s, in->p, n);
	s[n] = '\0';
	in->p += n;
	return s;
}

/* A chunk argument: points into the input. */
static const uint8_t *
get_chunk(struct input *in, size_t *len)
{
	size_t n = 0;
	const uint8_t *c;

	if (in->end - in->p >= 2) {
		n = in->p[0] | (size_t)in->p[1] << 8;
		in->p += 2;
	} else
		in->p = in->end;
	if (n > (size_t)(in->end - in->p))
		n = (size_t)(in->end - in->p);
	c = in->p;
	in->p += n;
	*len = n;
	return c;
}

/* What must hold of a message however it was assembled. */
static void
check_msg(const struct msg *m)
{
	static const char prefix[] = "Received: from edmilter\r\n";

	FUZZ_CHECK(m->raw_start == sizeof(prefix) - 1);
	FUZZ_CHECK(m->raw.len >= m->raw_start &&
		   memcmp(m->raw.data, prefix, m->raw_start) == 0);
	FUZZ_CHECK(m->raw.len - m->raw_start <= m->limit);
	FUZZ_CHECK(m->size >= m->raw.len - m->raw_start);
	FUZZ_CHECK(!m->truncated || m->size > m->limit);
	if (m->in_body)
		FUZZ_CHECK(m->body_start >= m->raw_start &&
			   m->body_start <= m->raw.len);
	for (size_t i = 0; i < m->nhdrs; i++) {
		const struct msg_hdr *h = &m->hdrs[i];

		FUZZ_CHECK(h->name && h->raw && h->value);
		FUZZ_CHECK(strlen(h->value) <= strlen(h->raw));
		FUZZ_CHECK(msg_header_count(m, h->name) >= 1);
		FUZZ_CHECK(msg_header(m, h->name) != NULL);
	}
	for (size_t i = 0; i < m->nrcpts; i++)
		FUZZ_CHECK(m->rcpts[i] != NULL);
	for (size_t i = 0; i < m->nmacros; i++)
		FUZZ_CHECK(msg_macro(m, m->macros[i].name) != NULL);
	FUZZ_CHECK(memchr(m->client_addr, '\0', sizeof(m->client_addr)));
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet_log();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, data + size};
	struct msg m;
	char *a, *b, *v;
	const uint8_t *chunk;
	size_t len;

	if (size == 0)
		return 0;
	msg_init(&m, (size_t)64 << (*in.p++ % 16));
	while (in.p < in.end) {
		uint8_t op = *in.p++;

		switch (op % 10) {
		case 0:
			a = get_str(&in), b = get_str(&in);
			msg_set_client(&m, a, b);
			free(a), free(b);
			break;
		case 1:
			a = get_str(&in);
			msg_set_helo(&m, a);
			free(a);
			break;
		case 2:
			a = get_str(&in), b = get_str(&in);
			msg_set_macro(&m, a, b);
			FUZZ_CHECK(strcmp(msg_macro(&m, a), b) == 0);
			free(a), free(b);
			break;
		case 3:
			a = get_str(&in);
			msg_set_from(&m, a);
			free(a);
			break;
		case 4:
			a = get_str(&in);
			msg_add_rcpt(&m, a);
			free(a);
			break;
		case 5:
			a = get_str(&in), b = get_str(&in);
			if (op >= 128) { /* what mlfi_header does then */
				v = xmalloc(strlen(b) + 2);
				v[0] = ' ';
				strcpy(v + 1, b);
				msg_add_header(&m, a, v);
				free(v);
			} else
				msg_add_header(&m, a, b);
			free(a), free(b);
			break;
		case 6:
			msg_end_headers(&m);
			break;
		case 7:
			chunk = get_chunk(&in, &len);
			msg_add_body(&m, chunk, len);
			break;
		case 8:
			msg_reset(&m);
			FUZZ_CHECK(m.nhdrs == 0 && m.nrcpts == 0 &&
				   m.from == NULL && !m.in_body);
			break;
		case 9:
			msg_end_headers(&m);
			check_msg(&m);
			break;
		}
	}
	check_msg(&m);
	msg_reset(&m);
	check_msg(&m);
	msg_free(&m);
	return 0;
}
