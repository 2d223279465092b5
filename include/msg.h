/*
 * msg.h: one message as the checks see it, whichever front end filled it:
 * the SMTP envelope, the headers raw and unfolded, and the whole message
 * (headers, blank line, body; CRLF line ends) in one buffer.
 */
#ifndef MSG_H
#define MSG_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

struct msg_hdr {
	char *name;
	char *raw;   /* as received: leading space kept, folds with LF */
	char *value; /* unfolded, surrounding space removed */
};

struct msg_macro {
	char *name;
	char *value;
};

struct msg {
	/* Connection. */
	char client_addr[64];
	char *client_name;
	char *helo;
	struct msg_macro *macros;
	size_t nmacros;

	/* Message. */
	char qid[64];
	char *from; /* envelope sender without <>; "" for the null sender */
	char **rcpts;
	size_t nrcpts;
	char *auth;
	struct msg_hdr *hdrs;
	size_t nhdrs;

	/*
	 * The whole message as it will be scanned. It begins with a Received
	 * header of ours (libclamav recognises mail by such magic) that is
	 * raw_start bytes long; the message proper follows.
	 */
	struct buf raw;
	size_t raw_start;
	size_t body_start; /* offset of the body in raw, once headers end */
	bool in_body;
	size_t size;  /* bytes of the message seen, kept or not */
	size_t limit; /* bytes to keep; beyond it the message is cut */
	bool truncated;
	char *failed; /* an internal error: the message could not be kept */

	/* Header limits (0: none); over_headers says which was passed. */
	size_t max_headers;
	size_t max_header_size;
	char *over_headers;
};

void msg_init(struct msg *m, size_t limit);
/* Forgets the message, keeps the connection (client, HELO, macros). */
void msg_reset(struct msg *m);
void msg_free(struct msg *m);

void msg_set_client(struct msg *m, const char *addr, const char *name);
void msg_set_helo(struct msg *m, const char *helo);
void msg_set_macro(struct msg *m, const char *name, const char *value);
const char *msg_macro(const struct msg *m, const char *name);
/* Takes "<addr>" or "addr" as the MTA gives it. */
void msg_set_from(struct msg *m, const char *from);
void msg_add_rcpt(struct msg *m, const char *rcpt);
void msg_add_header(struct msg *m, const char *name, const char *raw);
void msg_end_headers(struct msg *m);
/* Body bytes, CRLF line ends as the MTA sends them. */
void msg_add_body(struct msg *m, const void *p, size_t n);
/* How many headers of this name come before position idx, plus one. */
int msg_header_count(const struct msg *m, const char *name);
const struct msg_hdr *msg_header(const struct msg *m, const char *name);

/*
 * Fills m from a message file's bytes (LF or CRLF line ends), as the milter
 * callbacks would: headers one by one, then the body with CRLF line ends.
 */
void msg_parse(struct msg *m, const char *data, size_t len);

#endif
