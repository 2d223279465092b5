/*
 * mime.c: a message decoded with GMime for the rules. The tree GMime builds
 * is walked in order; each leaf part gives its declared type, the file name
 * a mail client would show (RFC 2231 continuations and percent-encoding and
 * RFC 2047 encoded words undone by GMime; here stray quotes dropped and
 * filename*= preferred to filename=, as Thunderbird does) and its
 * decoded size; text parts also give their text, in UTF-8 where the charset
 * is known, HTML turned into what a reader sees. Attached messages are
 * walked into, even when their transfer encoding hides them from GMime.
 *
 * Boundaries come from the Content-Type header alone, as a mail client
 * takes them; a boundary parameter elsewhere is never looked at.
 *
 * Work is bounded by struct mime_limits: past the nesting depth, the number
 * of leaf parts or the decoded bytes, the walk stops and keeps what it saw.
 *
 * GMime parses the whole message before the walk begins, and compares each
 * line that starts with "--" with every open boundary, up to 1024 of them:
 * 7 MB of nested multiparts cost it 3 s. So before GMime sees a message,
 * a cheap scan counts those comparisons, taking every boundary declared so
 * far to be open, and cuts the message where they pass MIME_SCAN_BUDGET;
 * the limit is then "boundaries". XXX The count is an upper bound: a huge
 * message declaring thousands of boundaries can be cut before its end.
 *
 * Logs nothing: the caller logs r->error or r->limit with the queue id.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "mime.h"

/* Boundary comparisons GMime may make for one message: about 0.5 s. */
#define MIME_SCAN_BUDGET (16UL * 1000 * 1000)

/* The open boundaries GMime keeps at most. */
#define MIME_GMIME_NESTING 1024

/* Used when the caller passes no limits. */
static const struct mime_limits mime_default_limits = {
    .depth = 64,
    .parts = 1000,
    .decoded_bytes = 64 * 1024 * 1024,
};

/* The state of one walk over a message and its attached messages. */
struct mime_walk {
	const struct mime_limits *lim;
	struct mime_result *r;
	size_t bytes;	  /* decoded so far */
	size_t scan_cost; /* boundary comparisons GMime was let make */
	bool stop;
};

static pthread_once_t mime_once = PTHREAD_ONCE_INIT;

static void
mime_init_once(void)
{
	g_mime_init();
}

void
mime_init(void)
{
	pthread_once(&mime_once, mime_init_once);
}

/* Records that a limit was hit; the first one hit is the one named. */
static void
mime_note_limit(struct mime_walk *w, const char *which)
{
	if (!w->r->limited) {
		w->r->limited = true;
		w->r->limit = which;
	}
}

/* Records that a limit was hit and stops the walk. */
static void
mime_limit(struct mime_walk *w, const char *which)
{
	mime_note_limit(w, which);
	w->stop = true;
}

/* Records a failure and stops the walk. */
static void
mime_fail(struct mime_walk *w, const char *why)
{
	if (w->r->error == NULL)
		w->r->error = xstrdup(why);
	w->stop = true;
}

/*
 * GMime's parser warns when its own nesting cap cuts the message (the walk
 * goes on with what GMime kept) and when other software may read the
 * message otherwise than it does.
 */
static void
mime_warning(gint64 offset, GMimeParserWarning code, const gchar *item,
	     gpointer data)
{
	struct mime_walk *w = data;

	(void)offset;
	(void)item;
	switch (code) {
	case GMIME_CRIT_NESTING_OVERFLOW:
		mime_note_limit(w, "depth");
		break;
	case GMIME_CRIT_INVALID_HEADER_NAME:
	case GMIME_CRIT_CONFLICTING_HEADER:
	case GMIME_CRIT_CONFLICTING_PARAMETER:
	case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
	case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
		w->r->ambiguous = true;
		break;
	default:
		break;
	}
}

/*
 * The name as a client shows it. GMime has undone the encodings; what is
 * left is a quote without its pair ("evil.exe or evil.exe"), which a client
 * drops, and surrounding space.
 */
static char *
mime_clean_name(const char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n > 0 && s[0] == '"' && (n == 1 || s[n - 1] != '"')) {
		s++;
		n--;
	} else if (n > 0 && s[n - 1] == '"' && s[0] != '"')
		n--;

	/* Windows drops trailing dots and spaces: "x.exe." is x.exe. */
	while (n > 1 && (s[n - 1] == '.' || s[n - 1] == ' '))
		n--;
	return xstrndup(s, n);
}

/*
 * The value of a parameter as a client takes it: of several, the RFC 2231
 * one (name*=) wins, as in Thunderbird, else the first. NULL for none or
 * an empty one.
 */
static char *
mime_param(GMimeParamList *list, const char *name)
{
	GMimeParam *best = NULL;
	int n = list ? g_mime_param_list_length(list) : 0;

	for (int i = 0; i < n; i++) {
		GMimeParam *p = g_mime_param_list_get_parameter_at(list, i);
		const char *v = g_mime_param_get_value(p);

		if (g_ascii_strcasecmp(g_mime_param_get_name(p), name) != 0 ||
		    v == NULL || *v == '\0')
			continue;
		if (best == NULL || (g_mime_param_get_encoding_method(best) !=
					 GMIME_PARAM_ENCODING_METHOD_RFC2231 &&
				     g_mime_param_get_encoding_method(p) ==
					 GMIME_PARAM_ENCODING_METHOD_RFC2231))
			best = p;
	}
	if (best == NULL)
		return NULL;
	return mime_clean_name(g_mime_param_get_value(best));
}

/* The file name: the disposition's filename, else the type's name. */
static char *
mime_name(GMimeObject *o)
{
	GMimeContentDisposition *d = g_mime_object_get_content_disposition(o);
	GMimeContentType *ct = g_mime_object_get_content_type(o);
	char *name = NULL;

	if (d != NULL)
		name = mime_param(g_mime_content_disposition_get_parameters(d),
				  "filename");
	if (name == NULL || *name == '\0') {
		free(name);
		name =
		    mime_param(g_mime_content_type_get_parameters(ct), "name");
	}
	if (name != NULL && *name == '\0') {
		free(name);
		name = NULL;
	}
	return name;
}

/* Is c among mp's other names already? */
static bool
mime_has_name(const struct mime_part *mp, const char *c)
{
	for (size_t i = 0; i < mp->nalt_names; i++)
		if (strcmp(mp->alt_names[i], c) == 0)
			return true;
	return false;
}

/*
 * The other names some client may show instead of name: the Content-Type
 * name= beside a disposition filename=, every further filename= or name=
 * (clients differ on which of a repeated parameter they show), each once,
 * into mp; past MIME_MAX_NAMES the limit "names" is noted and the last
 * name stays among them.
 */
static void
mime_alt_names(struct mime_walk *w, GMimeObject *o, struct mime_part *mp)
{
	GMimeContentDisposition *d = g_mime_object_get_content_disposition(o);
	GMimeParamList *lists[2] = {
	    g_mime_content_type_get_parameters(
		g_mime_object_get_content_type(o)),
	    d ? g_mime_content_disposition_get_parameters(d) : NULL,
	};
	static const char *params[2] = {"name", "filename"};
	const char *name = mp->name;

	if (name == NULL)
		return;
	for (int k = 0; k < 2; k++) {
		int n = lists[k] ? g_mime_param_list_length(lists[k]) : 0;

		for (int i = 0; i < n; i++) {
			GMimeParam *p =
			    g_mime_param_list_get_parameter_at(lists[k], i);
			const char *v = g_mime_param_get_value(p);
			char *c;

			if (g_ascii_strcasecmp(g_mime_param_get_name(p),
					       params[k]) != 0 ||
			    v == NULL || *v == '\0')
				continue;
			c = mime_clean_name(v);
			if (*c == '\0' || strcmp(c, name) == 0 ||
			    mime_has_name(mp, c)) {
				free(c);
				continue;
			}
			if (mp->nalt_names == MIME_MAX_NAMES) {
				/* The last one seen stays: clients that
				 * take a repeated parameter's last show it. */
				free(mp->alt_names[MIME_MAX_NAMES - 1]);
				mp->alt_names[MIME_MAX_NAMES - 1] = c;
				mime_note_limit(w, "names");
				continue;
			}
			if (mp->alt_names == NULL)
				mp->alt_names = xcalloc(MIME_MAX_NAMES,
							sizeof(*mp->alt_names));
			mp->alt_names[mp->nalt_names++] = c;
		}
	}
}

/* Decodes a part's content (transfer encoding undone); NULL on failure. */
static GByteArray *
mime_decode(GMimePart *part)
{
	GMimeDataWrapper *content = g_mime_part_get_content(part);
	GMimeStream *mem;
	GByteArray *out;

	if (content == NULL)
		return g_byte_array_new();
	mem = g_mime_stream_mem_new();
	if (g_mime_data_wrapper_write_to_stream(content, mem) < 0) {
		g_object_unref(mem);
		return NULL;
	}
	out = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(mem), FALSE);
	g_object_unref(mem);
	return out;
}

/* Is the charset one whose bytes are kept as they are? */
static bool
mime_charset_native(const char *charset)
{
	static const char *native[] = {"utf-8", "utf8", "us-ascii", "ascii",
				       NULL};

	for (size_t i = 0; native[i] != NULL; i++)
		if (strcasecmp(charset, native[i]) == 0)
			return true;
	return false;
}

/* The text converted to UTF-8; NULL when GMime knows no such charset. */
static GByteArray *
mime_to_utf8(const GByteArray *in, const char *charset)
{
	GMimeFilter *filter;
	GMimeStream *mem, *fs;
	GByteArray *out;

	if ((filter = g_mime_filter_charset_new(charset, "UTF-8")) == NULL)
		return NULL;
	mem = g_mime_stream_mem_new();
	fs = g_mime_stream_filter_new(mem);
	g_mime_stream_filter_add(GMIME_STREAM_FILTER(fs), filter);
	g_object_unref(filter);
	if (in->len > 0)
		g_mime_stream_write(fs, (const char *)in->data, in->len);
	g_mime_stream_flush(fs);
	g_object_unref(fs);
	out = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(mem), FALSE);
	g_object_unref(mem);
	return out;
}

/* Appends a text part's text, at most len bytes of its decoded content. */
static void
mime_add_text(struct mime_walk *w, GMimeObject *o, const char *type,
	      const GByteArray *raw, size_t len)
{
	const char *charset =
	    g_mime_object_get_content_type_parameter(o, "charset");
	GByteArray *conv = NULL, cut = *raw;
	const char *p;
	size_t n;

	cut.len = (guint)len;
	if (charset != NULL && !mime_charset_native(charset))
		conv = mime_to_utf8(&cut, charset);
	p = (const char *)(conv ? conv->data : raw->data);
	n = conv ? conv->len : len;

	if (strcmp(type, "text/html") == 0)
		mime_html_text(p, n, &w->r->text);
	else if (n > 0 && buf_append(&w->r->text, p, n) < 0)
		mime_fail(w, "mime: text: out of memory");
	if (buf_append(&w->r->text, "\n", 1) < 0)
		mime_fail(w, "mime: text: out of memory");
	if (conv != NULL)
		g_byte_array_free(conv, TRUE);
}

static void mime_walk_data(struct mime_walk *w, const char *data, size_t len,
			   int depth);

/* Records one leaf part; walks into an attached message GMime left whole. */
static void
mime_leaf(struct mime_walk *w, GMimePart *part, int depth)
{
	GMimeObject *o = GMIME_OBJECT(part);
	GMimeContentType *ct = g_mime_object_get_content_type(o);
	const char *disp = g_mime_object_get_disposition(o);
	struct mime_part *mp;
	GByteArray *raw;
	size_t keep;
	char *type;

	if (w->r->nparts >= w->lim->parts) {
		mime_limit(w, "parts");
		return;
	}
	if ((raw = mime_decode(part)) == NULL) {
		mime_fail(w, "mime: part: cannot decode");
		return;
	}

	/* The array doubles at each power of two. */
	if ((w->r->nparts & (w->r->nparts - 1)) == 0)
		w->r->parts = xrealloc(w->r->parts,
				       (w->r->nparts ? 2 * w->r->nparts : 1) *
					   sizeof(*w->r->parts));
	mp = &w->r->parts[w->r->nparts++];
	type = g_mime_content_type_get_mime_type(ct);
	mp->type = xstrdup(type);
	g_free(type);
	for (char *s = mp->type; *s; s++)
		*s = g_ascii_tolower(*s);
	mp->name = mime_name(o);
	mp->alt_names = NULL;
	mp->nalt_names = 0;
	mime_alt_names(w, o, mp);
	mp->size = raw->len;
	mp->depth = depth;
	mp->attachment =
	    (disp && strcasecmp(disp, GMIME_DISPOSITION_ATTACHMENT) == 0) ||
	    (mp->name != NULL &&
	     !(disp && strcasecmp(disp, GMIME_DISPOSITION_INLINE) == 0));

	/* The decoded bytes count once; past the budget only a cut is kept. */
	keep = raw->len;
	if (w->bytes + keep > w->lim->decoded_bytes) {
		keep = w->lim->decoded_bytes - w->bytes;
		mime_limit(w, "decoded_bytes");
	}
	w->bytes += keep;

	if (strncmp(mp->type, "text/", 5) == 0)
		mime_add_text(w, o, mp->type, raw, keep);
	else if (!w->stop && (strcmp(mp->type, "message/rfc822") == 0 ||
			      strcmp(mp->type, "message/global") == 0))
		mime_walk_data(w, (const char *)raw->data, keep, depth + 1);
	g_byte_array_free(raw, TRUE);
}

/*
 * A boundary in single quotes (boundary='b') is quoted to some clients,
 * which find the parts; GMime finds none and keeps all as the prologue.
 * The parts are seen the way those clients see them: the prologue is
 * parsed again under the boundary without its quotes. Returns whether it
 * was.
 */
static bool
mime_requote(struct mime_walk *w, GMimeMultipart *mp, int depth)
{
	const char *b = g_mime_multipart_get_boundary(mp);
	const char *body = g_mime_multipart_get_prologue(mp);
	GMimeContentType *ct;
	struct buf m = {0};
	size_t n;
	char *type;

	if (b == NULL || body == NULL || (n = strlen(b)) < 3 || b[0] != '\'' ||
	    b[n - 1] != '\'' || memchr(b, '"', n) != NULL)
		return false;
	ct = g_mime_object_get_content_type(GMIME_OBJECT(mp));
	type = g_mime_content_type_get_mime_type(ct);
	if (buf_printf(&m, "Content-Type: %s; boundary=\"%.*s\"\r\n\r\n", type,
		       (int)(n - 2), b + 1) < 0 ||
	    buf_append(&m, body, strlen(body)) < 0)
		mime_fail(w, "mime: multipart: out of memory");
	else
		mime_walk_data(w, m.data, m.len, depth);
	g_free(type);
	buf_free(&m);
	return true;
}

/* Walks one node of GMime's tree, in the order of the message. */
static void
mime_walk_object(struct mime_walk *w, GMimeObject *o, int depth)
{
	if (w->stop)
		return;
	if (depth > w->lim->depth) {
		mime_limit(w, "depth");
		return;
	}

	if (GMIME_IS_MULTIPART(o)) {
		GMimeMultipart *mp = GMIME_MULTIPART(o);
		int n = g_mime_multipart_get_count(mp);

		if (n == 0 && mime_requote(w, mp, depth))
			return;
		for (int i = 0; i < n && !w->stop; i++)
			mime_walk_object(w, g_mime_multipart_get_part(mp, i),
					 depth + 1);
	} else if (GMIME_IS_MESSAGE_PART(o)) {
		GMimeMessage *msg =
		    g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));

		if (msg != NULL && msg->mime_part != NULL)
			mime_walk_object(w, msg->mime_part, depth + 1);
	} else if (GMIME_IS_PART(o))
		mime_leaf(w, GMIME_PART(o), depth);
}

/* Does the line declare a boundary, as far as a cheap look can tell? */
static bool
mime_line_has_boundary(const char *p, size_t n)
{
	for (size_t i = 0; i + 8 <= n; i++)
		if ((p[i] | 0x20) == 'b' &&
		    g_ascii_strncasecmp(p + i, "boundary", 8) == 0)
			return true;
	return false;
}

/*
 * How much of data GMime may parse within what is left of the budget of
 * boundary comparisons: a line that starts with "--" is taken to cost one
 * comparison per boundary declared before it.
 */
static size_t
mime_scan_cut(struct mime_walk *w, const char *data, size_t len)
{
	size_t declared = 0, i = 0;

	while (i < len) {
		const char *nl = memchr(data + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - data) + 1 : len;

		if (end - i >= 2 && data[i] == '-' && data[i + 1] == '-') {
			w->scan_cost += declared < MIME_GMIME_NESTING
					    ? declared
					    : MIME_GMIME_NESTING;
			if (w->scan_cost > MIME_SCAN_BUDGET) {
				mime_note_limit(w, "boundaries");
				return i;
			}
		} else if (mime_line_has_boundary(data + i, end - i))
			declared++;
		i = end;
	}
	return len;
}

/* Parses a message from bytes and walks it; depth is its own depth. */
static void
mime_walk_data(struct mime_walk *w, const char *data, size_t len, int depth)
{
	GMimeParserOptions *opts;
	GMimeParser *parser;
	GMimeStream *stream;
	GMimeMessage *msg;
	GByteArray *wrap;

	if (depth > w->lim->depth) {
		mime_limit(w, "depth");
		return;
	}
	if (data == NULL)
		data = "";
	len = mime_scan_cut(w, data, len);
	/*
	 * The parser reads the message where it lies: the array wraps our
	 * bytes without a copy, the stream does not own it, and the array
	 * goes (without its bytes) once the message is done with.
	 */
	wrap = g_byte_array_new_take((guint8 *)data, len);
	stream = g_mime_stream_mem_new_with_byte_array(wrap);
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream), FALSE);
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	opts = g_mime_parser_options_new();
	g_mime_parser_options_set_warning_callback(opts, mime_warning, w);
	msg = g_mime_parser_construct_message(parser, opts);
	g_mime_parser_options_free(opts);
	g_object_unref(parser);
	g_object_unref(stream);

	if (msg == NULL) {
		/* An attached message that is none is no reason to fail. */
		if (depth == 0)
			mime_fail(w, "mime: message: cannot parse");
		g_byte_array_free(wrap, FALSE);
		return;
	}
	if (msg->mime_part != NULL)
		mime_walk_object(w, msg->mime_part, depth);
	g_object_unref(msg);
	g_byte_array_free(wrap, FALSE);
}

int
mime_parse(const char *data, size_t len, const struct mime_limits *lim,
	   struct mime_result *r)
{
	struct mime_walk w;

	memset(r, 0, sizeof(*r));
	memset(&w, 0, sizeof(w));
	w.lim = lim ? lim : &mime_default_limits;
	w.r = r;
	mime_init();
	if (buf_append(&r->text, "", 0) < 0) {
		r->error = xstrdup("mime: text: out of memory");
		return -1;
	}
	mime_walk_data(&w, data, len, 0);
	return r->error ? -1 : 0;
}

void
mime_result_free(struct mime_result *r)
{
	for (size_t i = 0; i < r->nparts; i++) {
		free(r->parts[i].type);
		free(r->parts[i].name);
		for (size_t j = 0; j < r->parts[i].nalt_names; j++)
			free(r->parts[i].alt_names[j]);
		free(r->parts[i].alt_names);
	}
	free(r->parts);
	buf_free(&r->text);
	free(r->error);
	memset(r, 0, sizeof(*r));
}

/*
 * HTML to text, as a browser would lay it out, in one pass: tags, comments
 * and declarations go; the content of script, style, title, textarea and
 * noscript goes; block tags become line breaks, inline tags nothing (so
 * "pay<b>pal</b>" stays one word); runs of white space become one space;
 * entities are decoded. Output is never longer than the input.
 */

struct mime_entity {
	const char *name;
	unsigned int cp;
};

/* The entities mail uses; &name; of any other name is left as it is. */
static const struct mime_entity mime_entities[] = {
    {"amp", '&'},	{"lt", '<'},	   {"gt", '>'},	      {"quot", '"'},
    {"apos", '\''},	{"AMP", '&'},	   {"LT", '<'},	      {"GT", '>'},
    {"QUOT", '"'},	{"nbsp", 0xa0},	   {"shy", 0xad},     {"copy", 0xa9},
    {"reg", 0xae},	{"trade", 0x2122}, {"euro", 0x20ac},  {"pound", 0xa3},
    {"yen", 0xa5},	{"cent", 0xa2},	   {"sect", 0xa7},    {"deg", 0xb0},
    {"times", 0xd7},	{"divide", 0xf7},  {"middot", 0xb7},  {"bull", 0x2022},
    {"hellip", 0x2026}, {"ndash", 0x2013}, {"mdash", 0x2014}, {"lsquo", 0x2018},
    {"rsquo", 0x2019},	{"ldquo", 0x201c}, {"rdquo", 0x201d}, {"laquo", 0xab},
    {"raquo", 0xbb},	{"zwnj", 0x200c},  {"zwj", 0x200d},   {"auml", 0xe4},
    {"ouml", 0xf6},	{"uuml", 0xfc},	   {"Auml", 0xc4},    {"Ouml", 0xd6},
    {"Uuml", 0xdc},	{"szlig", 0xdf},   {"eacute", 0xe9},  {"egrave", 0xe8},
    {"agrave", 0xe0},	{"ccedil", 0xe7},  {"iexcl", 0xa1},   {"iquest", 0xbf},
};

/* Tags whose content is not shown. */
static const char *mime_hidden_tags[] = {"script",   "style",	 "title",
					 "textarea", "noscript", NULL};

/* Tags that break the line. */
static const char *mime_block_tags[] = {
    "br",      "p",	  "div",    "tr",     "li",	"ul",	   "ol",
    "table",   "h1",	  "h2",	    "h3",     "h4",	"h5",	   "h6",
    "hr",      "pre",	  "dt",	    "dd",     "dl",	"form",	   "blockquote",
    "section", "article", "header", "footer", "center", "address", NULL};

static bool
mime_in_list(const char *name, const char **list)
{
	for (size_t i = 0; list[i] != NULL; i++)
		if (strcmp(name, list[i]) == 0)
			return true;
	return false;
}

/* Appends a code point as UTF-8; what HTML forbids becomes U+FFFD. */
static void
mime_put_cp(struct buf *out, unsigned long cp)
{
	char u[4];
	size_t n;

	/* HTML reads &#128; to &#159; as Windows-1252. */
	static const unsigned short cp1252[32] = {
	    0x20ac, 0x81,   0x201a, 0x192,  0x201e, 0x2026, 0x2020, 0x2021,
	    0x2c6,  0x2030, 0x160,  0x2039, 0x152,  0x8d,   0x17d,  0x8f,
	    0x90,   0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
	    0x2dc,  0x2122, 0x161,  0x203a, 0x153,  0x9d,   0x17e,  0x178};

	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		cp = 0xfffd;
	else if (cp >= 0x80 && cp <= 0x9f)
		cp = cp1252[cp - 0x80];
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(out, u, n);
}

/*
 * Decodes the entity at p[0] == '&'; returns the bytes it took, 0 when it
 * is no entity (the '&' is then text).
 */
static size_t
mime_entity(const char *p, size_t n, struct buf *out)
{
	unsigned long cp = 0;
	size_t i = 1, start;

	if (i < n && p[i] == '#') {
		int base = 10, digits = 0;

		i++;
		if (i < n && (p[i] == 'x' || p[i] == 'X')) {
			base = 16;
			i++;
		}
		for (; i < n && g_ascii_isxdigit(p[i]); i++) {
			if (base == 10 && !g_ascii_isdigit(p[i]))
				break;
			if (cp <= 0x10ffff)
				cp = cp * (unsigned long)base +
				     (unsigned long)g_ascii_xdigit_value(p[i]);
			digits++;
		}
		if (digits == 0)
			return 0;
		if (i < n && p[i] == ';')
			i++;
		mime_put_cp(out, cp);
		return i;
	}

	start = i;
	while (i < n && i - start < 16 && g_ascii_isalnum(p[i]))
		i++;
	for (size_t e = 0; e < G_N_ELEMENTS(mime_entities); e++) {
		const struct mime_entity *en = &mime_entities[e];

		if (strlen(en->name) != i - start ||
		    memcmp(en->name, p + start, i - start) != 0)
			continue;
		if (i < n && p[i] == ';')
			i++;
		mime_put_cp(out, en->cp);
		return i;
	}
	return 0;
}

/* Where the tag opened at p[0] == '<' ends, just past its '>'. */
static size_t
mime_tag_end(const char *p, size_t n)
{
	char quote = 0;
	const char *gt;

	for (size_t i = 1; i < n; i++) {
		if (quote) {
			if (p[i] == quote)
				quote = 0;
		} else if (p[i] == '"' || p[i] == '\'') {
			quote = p[i];
		} else if (p[i] == '>')
			return i + 1;
	}

	/* A quote left open: the first '>' ends it after all. */
	if ((gt = memchr(p, '>', n)) != NULL)
		return (size_t)(gt - p) + 1;
	return n;
}

/* Where the hidden content that starts at p ends: past "</name...>". */
static size_t
mime_hidden_end(const char *p, size_t n, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i + 2 + len <= n; i++)
		if (p[i] == '<' && p[i + 1] == '/' &&
		    g_ascii_strncasecmp(p + i + 2, name, len) == 0 &&
		    (i + 2 + len == n || !g_ascii_isalnum(p[i + 2 + len])))
			return i + mime_tag_end(p + i, n - i);
	return n;
}

/* Writes the one space a run of white space stands for, if any. */
static void
mime_flush_space(struct buf *out, bool *space)
{
	if (*space && out->len > 0 && out->data[out->len - 1] != '\n')
		buf_append(out, " ", 1);
	*space = false;
}

/* Handles the markup at p[0] == '<'; returns the bytes it took. */
static size_t
mime_markup(const char *p, size_t n, struct buf *out, bool *space)
{
	char name[16];
	size_t i = 1, k = 0, end;
	bool closing = false;

	if (n >= 4 && memcmp(p, "<!--", 4) == 0) {
		const char *c = g_strstr_len(p + 4, (gssize)(n - 4), "-->");

		return c ? (size_t)(c - p) + 3 : n;
	}
	if (i < n && p[i] == '/') {
		closing = true;
		i++;
	}
	if (i >= n || (!g_ascii_isalpha(p[i]) && p[i] != '!' && p[i] != '?')) {
		if (closing)
			return mime_tag_end(p, n);
		mime_flush_space(out, space);
		buf_append(out, "<", 1);
		*space = false;
		return 1;
	}

	while (i < n && g_ascii_isalnum(p[i]) && k < sizeof(name) - 1)
		name[k++] = g_ascii_tolower(p[i++]);
	name[k] = '\0';
	end = mime_tag_end(p, n);

	if (!closing && mime_in_list(name, mime_hidden_tags))
		return end + mime_hidden_end(p + end, n - end, name);
	if (mime_in_list(name, mime_block_tags)) {
		if (out->len > 0 && out->data[out->len - 1] != '\n')
			buf_append(out, "\n", 1);
		*space = false;
	} else if (strcmp(name, "td") == 0 || strcmp(name, "th") == 0)
		*space = true;
	return end;
}

void
mime_html_text(const char *html, size_t len, struct buf *out)
{
	bool space = false; /* white space seen and not yet written */
	size_t i = 0, used;

	while (i < len) {
		char c = html[i];

		if (c == '<') {
			i += mime_markup(html + i, len - i, out, &space);
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' ||
		    c == '\f') {
			space = true;
			i++;
			continue;
		}
		mime_flush_space(out, &space);
		if (c == '&' && (used = mime_entity(html + i, len - i, out))) {
			i += used;
			continue;
		}
		buf_append(out, &c, 1);
		i++;
	}
}
