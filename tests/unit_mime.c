/*
 * unit_mime.c: MIME decoding with GMime: the file names a mail client shows
 * for the evasions of tests/data/mime, the MIME torture test against its
 * expected tree, text decoding, HTML to text, the limits, hostile input.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"
#include "tap.h"

static const struct mime_limits lim_default = {64, 1000, 16 * 1024 * 1024};

/* The source tree, as tests/run.sh exports it. */
static const char *
srcdir(void)
{
	const char *s = getenv("SRCDIR");

	return s && *s ? s : ".";
}

/* Reads a file whole; NULL when it cannot be read. */
static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	struct buf b = {0};
	char chunk[8192];
	size_t n;

	if (fp == NULL)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_append(&b, chunk, n);
	fclose(fp);
	buf_append(&b, "", 0);
	*len = b.len;
	return b.data;
}

static char *
slurp_data(const char *name, size_t *len)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/tests/data/mime/%s", srcdir(), name);
	return slurp(path, len);
}

/* The same bytes with every bare LF turned into CRLF, as msg.c keeps it. */
static char *
to_crlf(const char *s, size_t len, size_t *outlen)
{
	struct buf b = {0};

	buf_append(&b, "", 0);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			buf_append(&b, "\r", 1);
		buf_append(&b, s + i, 1);
	}
	*outlen = b.len;
	return b.data;
}

/* The first part of that name, or NULL. */
static const struct mime_part *
find_name(const struct mime_result *r, const char *name)
{
	for (size_t i = 0; i < r->nparts; i++)
		if (r->parts[i].name && strcmp(r->parts[i].name, name) == 0)
			return &r->parts[i];
	return NULL;
}

/* Does text (len bytes) contain the string? */
static int
has_text(const struct mime_result *r, const char *s)
{
	size_t n = strlen(s);

	for (size_t i = 0; i + n <= r->text.len; i++)
		if (memcmp(r->text.data + i, s, n) == 0)
			return 1;
	return 0;
}

/* One evasion file: parses with LF and CRLF line ends alike. */
static void
check_evasion(const char *file, const char *want, const char *why)
{
	char *data, *crlf;
	size_t len, clen;

	if ((data = slurp_data(file, &len)) == NULL) {
		ok(0, "%s: cannot read tests/data/mime/%s", why, file);
		return;
	}
	crlf = to_crlf(data, len, &clen);
	for (int pass = 0; pass < 2; pass++) {
		struct mime_result r;
		const struct mime_part *p;
		int rc = pass ? mime_parse(crlf, clen, &lim_default, &r)
			      : mime_parse(data, len, &lim_default, &r);

		p = find_name(&r, want);
		ok(rc == 0 && p != NULL && p->attachment && !r.limited,
		   "%s: the client shows \"%s\" (%s)", why, want,
		   pass ? "CRLF" : "LF");
		if (p == NULL)
			for (size_t i = 0; i < r.nparts; i++)
				printf("#   part %zu: %s name \"%s\"\n", i,
				       r.parts[i].type,
				       r.parts[i].name ? r.parts[i].name : "-");
		mime_result_free(&r);
	}
	free(crlf);
	free(data);
}

static void
test_evasions(void)
{
	struct mime_result r;
	char *data;
	size_t len;

	check_evasion("split.eml", "evil.exe",
		      "name split over filename*N* parameters");
	check_evasion("encword.eml", "evil.exe", "encoded-word name");
	check_evasion("quote.eml", "evil.exe", "unbalanced opening quote");
	check_evasion("quote.eml", "evil2.exe", "unbalanced closing quote");
	check_evasion("rfc822.eml", "evil.zip", "name in an attached message");
	check_evasion("rfc822.eml", "hidden.exe",
		      "name in a base64 attached message");
	check_evasion("pctdot.eml", "evil.exe", "percent-encoded dot");
	check_evasion("decoy.eml", "evil.exe",
		      "boundary from Content-Type, not the decoy");
	check_evasion("prefer2231.eml", "evil.exe",
		      "filename*= wins over filename=");

	/* Two Content-Type headers: clients differ, the result says so. */
	if ((data = slurp_data("dupctype.eml", &len)) != NULL) {
		mime_parse(data, len, &lim_default, &r);
		ok(r.ambiguous && r.nparts == 1,
		   "two Content-Type headers: the message is ambiguous");
		mime_result_free(&r);
		free(data);
	}

	/* The decoy's part is preamble to a client: it is no part at all. */
	if ((data = slurp_data("decoy.eml", &len)) != NULL) {
		mime_parse(data, len, &lim_default, &r);
		ok(r.nparts == 1 && find_name(&r, "innocent.txt") == NULL,
		   "decoy boundary: its part is not seen");
		mime_result_free(&r);
		free(data);
	}

	/* Depths: the attached message's parts sit two levels deeper. */
	if ((data = slurp_data("rfc822.eml", &len)) != NULL) {
		const struct mime_part *p;

		mime_parse(data, len, &lim_default, &r);
		p = find_name(&r, "evil.zip");
		ok(p && p->depth == 3 &&
		       strcmp(p->type, "application/zip") == 0,
		   "attached message: type and depth of its part");
		p = find_name(&r, "hidden.exe");
		ok(p && p->depth == 2 && p->size == 12,
		   "base64 attached message: depth and decoded size");
		ok(r.nparts == 5 && r.parts[3].depth == 1 &&
		       strcmp(r.parts[3].type, "message/rfc822") == 0 &&
		       r.parts[3].attachment,
		   "attached messages: an encoded one is a part itself");
		mime_result_free(&r);
		free(data);
	}
}

/*
 * A small JSON reader for the torture test's expected tree: objects,
 * arrays, strings, and the rest kept as bare words.
 */
struct jv {
	char kind; /* 'o', 'a', 's', 'w' */
	char *s;
	char **keys;
	struct jv **items;
	size_t n;
};

static void
jv_free(struct jv *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->n; i++) {
		if (v->keys)
			free(v->keys[i]);
		jv_free(v->items[i]);
	}
	free(v->keys);
	free(v->items);
	free(v->s);
	free(v);
}

static void
jv_space(const char **p)
{
	while (**p && isspace((unsigned char)**p))
		(*p)++;
}

/* A JSON string at *p == '"'; \uXXXX below 0x80 only, others as '?'. */
static char *
jv_string(const char **p)
{
	struct buf b = {0};
	const char *s = *p + 1;

	buf_append(&b, "", 0);
	while (*s && *s != '"') {
		char c = *s++;

		if (c == '\\' && *s) {
			c = *s++;
			if (c == 'n')
				c = '\n';
			else if (c == 'r')
				c = '\r';
			else if (c == 't')
				c = '\t';
			else if (c == 'u') {
				unsigned int u = 0;

				sscanf(s, "%4x", &u);
				s += strlen(s) >= 4 ? 4 : strlen(s);
				c = u < 0x80 ? (char)u : '?';
			}
		}
		buf_append(&b, &c, 1);
	}
	*p = *s ? s + 1 : s;
	return b.data;
}

static struct jv *
jv_parse(const char **p)
{
	struct jv *v = calloc(1, sizeof(*v));

	jv_space(p);
	if (**p == '{' || **p == '[') {
		char close = **p == '{' ? '}' : ']';

		v->kind = **p == '{' ? 'o' : 'a';
		(*p)++;
		for (;;) {
			jv_space(p);
			if (**p == close || **p == '\0')
				break;
			v->items =
			    realloc(v->items, (v->n + 1) * sizeof(*v->items));
			if (v->kind == 'o') {
				v->keys = realloc(
				    v->keys, (v->n + 1) * sizeof(*v->keys));
				v->keys[v->n] = jv_string(p);
				jv_space(p);
				if (**p == ':')
					(*p)++;
			}
			v->items[v->n++] = jv_parse(p);
			jv_space(p);
			if (**p == ',')
				(*p)++;
		}
		if (**p)
			(*p)++;
	} else if (**p == '"') {
		v->kind = 's';
		v->s = jv_string(p);
	} else {
		const char *s = *p;

		while (**p && !strchr(",]} \t\r\n", **p))
			(*p)++;
		v->kind = 'w';
		v->s = strndup(s, (size_t)(*p - s));
	}
	return v;
}

static const struct jv *
jv_get(const struct jv *v, const char *key)
{
	if (v == NULL || v->kind != 'o')
		return NULL;
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->keys[i], key) == 0)
			return v->items[i];
	return NULL;
}

static const char *
jv_str(const struct jv *v)
{
	return v && v->kind == 's' ? v->s : NULL;
}

/* The expected leaves as "depth type name" lines, in order. */
static void
jv_leaves(const struct jv *node, int depth, struct buf *out)
{
	const struct jv *ph = jv_get(node, "parsedHeader");
	const struct jv *ct = jv_get(ph, "content-type");
	const struct jv *cd = jv_get(ph, "content-disposition");
	const struct jv *kids = jv_get(node, "childNodes");
	const struct jv *msg = jv_get(node, "message");
	const char *type, *name;

	if (kids && kids->kind == 'a') {
		for (size_t i = 0; i < kids->n; i++)
			jv_leaves(kids->items[i], depth + 1, out);
		return;
	}
	if (msg) {
		jv_leaves(msg, depth + 1, out);
		return;
	}
	type = jv_str(jv_get(ct, "value"));
	name = jv_str(jv_get(jv_get(cd, "params"), "filename"));
	if (name == NULL)
		name = jv_str(jv_get(jv_get(ct, "params"), "name"));
	buf_printf(out, "%d %s %s\n", depth, type ? type : "text/plain",
		   name ? name : "-");
}

static void
test_torture(void)
{
	const char *dir = "../shared/corpora/mime-torture";
	char path[1024], *eml, *json;
	size_t elen, jlen;
	struct buf want = {0}, got = {0};
	struct mime_result r;
	const char *p;
	struct jv *tree;
	int rc;

	snprintf(path, sizeof(path), "%s/%s/mimetorture.eml", srcdir(), dir);
	eml = slurp(path, &elen);
	snprintf(path, sizeof(path), "%s/%s/mimetorture.json", srcdir(), dir);
	json = slurp(path, &jlen);
	if (eml == NULL || json == NULL) {
		ok(1, "# SKIP the MIME torture test is absent: %s", path);
		free(eml);
		free(json);
		return;
	}

	p = json;
	tree = jv_parse(&p);
	buf_append(&want, "", 0);
	jv_leaves(tree, 0, &want);
	jv_free(tree);

	rc = mime_parse(eml, elen, &lim_default, &r);
	ok(rc == 0 && !r.limited && !r.ambiguous,
	   "torture: parses within the limits, unambiguous");
	buf_append(&got, "", 0);
	for (size_t i = 0; i < r.nparts; i++)
		buf_printf(&got, "%d %s %s\n", r.parts[i].depth,
			   r.parts[i].type,
			   r.parts[i].name ? r.parts[i].name : "-");
	ok(r.nparts == 24, "torture: 24 leaf parts (got %zu)", r.nparts);
	is_str(got.data, want.data,
	       "torture: depth, type and name of every part as expected");
	ok(find_name(&r, "blah1.gz") && !find_name(&r, "blah2.gz"),
	   "torture: the disposition's filename wins over the type's name");
	ok(has_text(&r, "Welcome to Ryan Finnie's MIME torture test"),
	   "torture: the text of the first part");
	mime_result_free(&r);
	buf_free(&want);
	buf_free(&got);
	free(eml);
	free(json);
}

/* The small fixN.eml files of the corpus parse without error. */
static void
test_fixes(void)
{
	static const char *files[] = {"fix1.eml",
				      "fix2.eml",
				      "fix3.eml",
				      "fix4.eml",
				      "no_empty_line_between_text_boundary.eml",
				      NULL};

	for (size_t i = 0; files[i] != NULL; i++) {
		char path[1024], *data;
		struct mime_result r;
		size_t len;
		int rc;

		snprintf(path, sizeof(path),
			 "%s/../shared/corpora/mime-torture/%s", srcdir(),
			 files[i]);
		if ((data = slurp(path, &len)) == NULL) {
			ok(1, "# SKIP %s is absent", path);
			continue;
		}
		rc = mime_parse(data, len, &lim_default, &r);
		ok(rc == 0 && r.error == NULL && r.nparts > 0,
		   "%s parses without error", files[i]);
		if (strcmp(files[i], "fix3.eml") == 0)
			ok(r.nparts == 3 && has_text(&r, "Hello world 2!") &&
			       has_text(&r, "Hello world 3!") &&
			       !has_text(&r, "<b>"),
			   "fix3.eml: single-quoted boundary, three parts");
		if (strcmp(files[i], "no_empty_line_between_text_boundary."
				     "eml") == 0)
			ok(r.nparts == 2 && find_name(&r, "example.txt") &&
			       find_name(&r, "example.txt")->size == 8,
			   "%s: the attachment and its size", files[i]);
		mime_result_free(&r);
		free(data);
	}
}

static void
test_text(void)
{
	static const char msg[] =
	    "Subject: text\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/alternative; boundary=b\r\n"
	    "\r\n"
	    "--b\r\n"
	    "Content-Type: text/plain; charset=iso-8859-1\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n"
	    "\r\n"
	    "Gr=FC=DFe, caf=E9 soft=\r\n"
	    "break\r\n"
	    "--b\r\n"
	    "Content-Type: text/html; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "\r\n"
	    "PGh0bWw+PGhlYWQ+PHRpdGxlPmhpZGRlbjwvdGl0bGU+"
	    "PHN0eWxlPnB7fTwvc3R5bGU+"
	    "PC9oZWFkPjxib2R5PjxwPlBheTxiPlBhbDwvYj4gJmFtcDsgY28uPC9wPjxkaXY+"
	    "JiMx"
	    "MDQ7JiN4NjU7bGxvJm5ic3A7PC9kaXY+PC9ib2R5PjwvaHRtbD4=\r\n"
	    "--b\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "\r\n"
	    "YQBi/2M=\r\n"
	    "--b--\r\n";
	struct mime_result r;
	int rc;

	rc = mime_parse(msg, sizeof(msg) - 1, &lim_default, &r);
	ok(rc == 0 && r.nparts == 3, "text: three parts");
	ok(has_text(&r, "Gr\xc3\xbc\xc3\x9f"
			"e, caf\xc3\xa9 softbreak"),
	   "text: quoted-printable undone, ISO-8859-1 in UTF-8");
	ok(has_text(&r, "\nPayPal & co.\nhello\xc2\xa0"),
	   "text: base64 HTML to text, entities decoded, tags gone");
	ok(!has_text(&r, "hidden") && !has_text(&r, "p{}"),
	   "text: title and style are not text");
	ok(has_text(&r, "a") && memchr(r.text.data, '\0', r.text.len) &&
	       has_text(&r, "\xff"
			    "c"),
	   "text: a NUL and invalid UTF-8 survive");
	ok(r.nparts == 3 && r.parts[2].size == 5 && !r.parts[2].attachment,
	   "text: decoded size of a base64 part, not an attachment");
	mime_result_free(&r);
}

/* mime_html_text on one string. */
static void
check_html(const char *html, const char *want, const char *why)
{
	struct buf b = {0};

	buf_append(&b, "", 0);
	mime_html_text(html, strlen(html), &b);
	is_str(b.data, want, "html: %s", why);
	buf_free(&b);
}

static void
test_html(void)
{
	check_html("a <b>b</b>  c", "a b c", "inline tags, spaces collapse");
	check_html("pay<span>pal</span>", "paypal", "no space for a span");
	check_html("one<br>two<p>three</p>", "one\ntwo\nthree\n",
		   "block tags break lines");
	check_html("&lt;&gt;&amp;&quot;&#39;&#x41;&#66", "<>&\"'AB",
		   "entities, with and without the semicolon");
	check_html("&bogus; & &#; &#xZ", "&bogus; & &#; &#xZ",
		   "no entity stays as it is");
	check_html("&#0;&#xd800;&#99999999999;",
		   "\xef\xbf\xbd\xef\xbf\xbd"
		   "\xef\xbf\xbd",
		   "forbidden code points become U+FFFD");
	check_html("&#150;&#x80;", "\xe2\x80\x93\xe2\x82\xac",
		   "&#128; to &#159; are Windows-1252");
	check_html("a<!-- b -->c<!-- never closed", "ac", "comments");
	check_html("<script>x<y</script>z<SCRIPT>w", "z",
		   "script content, closed or not");
	check_html("<a href=\"x>y\">link</a>", "link", "'>' inside quotes");
	check_html("<a href=\"x>y", "y", "an open quote ends at the first >");
	check_html("1 < 2 <3", "1 < 2 <3", "a lone '<' is text");
	check_html("<td>a</td><td>b</td>", "a b", "table cells apart");
}

/* A message of n multiparts each inside the last. */
static char *
build_nested(int n, size_t *len)
{
	struct buf b = {0};

	buf_printf(&b, "Subject: deep\r\nContent-Type: multipart/mixed; "
		       "boundary=b0\r\n\r\n");
	for (int i = 1; i < n; i++)
		buf_printf(&b,
			   "--b%d\r\nContent-Type: multipart/mixed; "
			   "boundary=b%d\r\n\r\n",
			   i - 1, i);
	buf_printf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\nbottom\r\n",
		   n - 1);
	for (int i = n - 1; i >= 0; i--)
		buf_printf(&b, "--b%d--\r\n", i);
	*len = b.len;
	return b.data;
}

/* A message of n parts side by side. */
static char *
build_wide(int n, size_t *len)
{
	struct buf b = {0};

	buf_printf(&b, "Subject: wide\r\nContent-Type: multipart/mixed; "
		       "boundary=b\r\n\r\n");
	for (int i = 0; i < n; i++)
		buf_printf(&b,
			   "--b\r\nContent-Type: application/octet-stream\r\n"
			   "Content-Disposition: attachment; "
			   "filename=f%d.bin\r\n\r\nxxxx\r\n",
			   i);
	buf_printf(&b, "--b--\r\n");
	*len = b.len;
	return b.data;
}

static void
test_limits(void)
{
	struct mime_limits lim = lim_default;
	struct mime_result r;
	char *data;
	size_t len;
	int rc;

	data = build_nested(1000, &len);
	rc = mime_parse(data, len, &lim, &r);
	ok(rc == 0 && r.limited && r.limit && strcmp(r.limit, "depth") == 0 &&
	       r.nparts == 0,
	   "1000-level nesting: the depth limit is hit");
	mime_result_free(&r);
	lim.depth = 5000;
	rc = mime_parse(data, len, &lim, &r);
	ok(rc == 0 && !r.limited && r.nparts == 1 && r.parts[0].depth == 1000,
	   "1000-level nesting under a higher limit: the bottom part");
	mime_result_free(&r);
	free(data);

	data = build_nested(3000, &len);
	rc = mime_parse(data, len, &lim, &r);
	ok(rc == 0 && r.limited && strcmp(r.limit, "depth") == 0,
	   "3000-level nesting: GMime's own cap counts as the depth limit");
	mime_result_free(&r);
	free(data);

	data = build_nested(20000, &len);
	rc = mime_parse(data, len, &lim, &r);
	ok(rc == 0 && r.limited && strcmp(r.limit, "boundaries") == 0,
	   "20,000-level nesting: GMime's boundary work is bounded first");
	mime_result_free(&r);
	free(data);

	lim = lim_default;
	data = build_wide(10000, &len);
	rc = mime_parse(data, len, &lim, &r);
	ok(rc == 0 && r.limited && strcmp(r.limit, "parts") == 0 &&
	       r.nparts == 1000,
	   "10,000 parts: the parts limit is hit, 1000 are kept");
	ok(r.nparts == 1000 && strcmp(r.parts[999].name, "f999.bin") == 0,
	   "10,000 parts: the kept ones are the first");
	mime_result_free(&r);
	lim.parts = 20000;
	lim.decoded_bytes = 1000 * 4 + 2;
	rc = mime_parse(data, len, &lim, &r);
	ok(rc == 0 && r.limited && strcmp(r.limit, "decoded_bytes") == 0 &&
	       r.nparts == 1001,
	   "10,000 parts: the decoded bytes limit is hit at part 1001");
	mime_result_free(&r);
	lim.decoded_bytes = lim_default.decoded_bytes;
	rc = mime_parse(data, len, &lim, &r);
	ok(rc == 0 && !r.limited && r.nparts == 10000,
	   "10,000 parts under higher limits: all of them");
	mime_result_free(&r);
	free(data);
}

static void
test_hostile(void)
{
	static const char *inputs[] = {
	    "",
	    "\r\n",
	    "no colon at all",
	    "Content-Type: multipart/mixed\r\n\r\n--\r\n--\r\n",
	    "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n\r\n",
	    "Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nhi",
	    "Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B\xff",
	    "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: "
	    "base64\r\n\r\n!!!!",
	    "Content-Type: application/x; name*0*=x''%; name*1*=%G\r\n\r\n",
	    "Content-Disposition: attachment; filename=\"\r\n\r\n",
	    "Content-Disposition: attachment; filename*=utf-8''%00.exe\r\n\r\n",
	    NULL};
	struct mime_result r;
	char *data, *copy;
	size_t len, survived = 0, runs = 0;
	unsigned int seed = 12345;

	for (size_t i = 0; inputs[i] != NULL; i++) {
		mime_parse(inputs[i], strlen(inputs[i]), &lim_default, &r);
		mime_result_free(&r);
	}
	ok(1, "odd inputs parse without a crash");

	/* Random damage to every evasion file, a fixed sequence of it. */
	static const char *files[] = {
	    "split.eml",      "encword.eml",  "quote.eml",
	    "rfc822.eml",     "pctdot.eml",   "decoy.eml",
	    "prefer2231.eml", "dupctype.eml", NULL};
	for (size_t f = 0; files[f] != NULL; f++) {
		if ((data = slurp_data(files[f], &len)) == NULL || len == 0)
			continue;
		copy = malloc(len);
		for (int k = 0; k < 200; k++) {
			memcpy(copy, data, len);
			for (int d = 0; d < 8; d++) {
				seed = seed * 1103515245 + 12345;
				copy[(seed >> 8) % len] =
				    (char)((seed >> 3) & 0xff);
			}
			seed = seed * 1103515245 + 12345;
			if (mime_parse(copy, 1 + (seed >> 8) % len,
				       &lim_default, &r) == 0)
				survived++;
			runs++;
			mime_result_free(&r);
		}
		free(copy);
		free(data);
	}
	ok(runs > 0 && survived > 0,
	   "%zu damaged messages parse without a crash (%zu parsed)", runs,
	   survived);
}

int
main(void)
{
	test_evasions();
	test_torture();
	test_fixes();
	test_text();
	test_html();
	test_limits();
	test_hostile();
	return tap_done();
}
