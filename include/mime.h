/*
 * mime.h: a message decoded with GMime for the rules: its leaf parts with
 * the names a mail client would show, and the text a reader would see.
 */
#ifndef MIME_H
#define MIME_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* Bounds on the work done for one message; past any of them parsing stops. */
struct mime_limits {
	int depth;    /* multiparts and attached messages around a part */
	size_t parts; /* leaf parts */
	size_t decoded_bytes; /* decoded bytes over all leaf parts */
};

/* Other names kept for one part; past it the limit "names" is noted. */
#define MIME_MAX_NAMES 16

struct mime_part {
	char *type;	  /* declared content type, lower case: "text/plain" */
	char *name;	  /* file name as a client shows it; NULL for none */
	char **alt_names; /* other names some client may show instead
			     (Content-Type name=, more filename=), each
			     once, at most MIME_MAX_NAMES */
	size_t nalt_names;
	size_t size;	 /* bytes once the transfer encoding is undone */
	int depth;	 /* containers around it; 0 for a single-part message */
	bool attachment; /* disposition attachment, or named and not inline */
};

struct mime_result {
	struct mime_part *parts; /* leaf parts in the order of the message */
	size_t nparts;

	/*
	 * The text of every part of type text, attachments too, one after
	 * the other, each ending in a newline: transfer encoding undone,
	 * converted to UTF-8 where the charset is known, HTML turned into
	 * plain text. Bytes that are not valid UTF-8, NUL among them, are
	 * kept as they are: use text.len.
	 */
	struct buf text;

	/*
	 * A limit was hit and what came before it is kept; limit says which:
	 * "depth", "parts", "decoded_bytes", "names" (a part with more than
	 * MIME_MAX_NAMES other names), or "boundaries" when the message
	 * was cut before GMime saw it to bound GMime's boundary matching.
	 */
	bool limited;
	const char *limit;

	/*
	 * Other software may read the message otherwise: GMime met headers or
	 * parameters that conflict (two Content-Type headers, two filenames),
	 * a bad header name, a multipart without a boundary.
	 */
	bool ambiguous;
	char *error; /* why mime_parse failed */
};

/* Initialises GMime once per process; any module using GMime calls it. */
void mime_init(void);

/*
 * Decodes the message in data (headers, blank line, body; LF or CRLF line
 * ends), such as m->raw.data + m->raw_start of a struct msg. lim NULL
 * means 64 levels, 1000 parts, 64 MB decoded. Returns 0, or -1 with
 * r->error set; either way r is to be freed with mime_result_free.
 */
int mime_parse(const char *data, size_t len, const struct mime_limits *lim,
	       struct mime_result *r);
void mime_result_free(struct mime_result *r);

/* Turns HTML into the text a reader sees: tags gone, entities decoded. */
void mime_html_text(const char *html, size_t len, struct buf *out);

#endif
