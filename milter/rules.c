/*
 * rules.c: the admins' rules language of edmilter.rules(5). A rules file is
 * read by a small hand-written lexer and a recursive-descent parser into a
 * list of rules, each a condition tree over tests and a list of actions.
 * Each rule is decided at the latest SMTP stage whose data it uses;
 * rules_eval runs a stage's rules in file order, catching up on earlier
 * stages not yet evaluated into the outcome, and stops at the first
 * decisive action. Values computed for one evaluation (decoded headers,
 * From addresses) are kept in a struct rules_ctx for its length only.
 *
 * Patterns are PCRE2, compiled once with PCRE2_UTF|PCRE2_MATCH_INVALID_UTF
 * (mail is not valid UTF-8) and JIT, and shared read-only between threads;
 * match data, match context and JIT stack are per thread. Every match is
 * bounded (match, depth and heap limits); a limit hit counts as no match.
 *
 * Logs, at warning level: "QID: rules: NAME: pattern hit a limit" and
 * "QID: rules: NAME: pattern: match error N". Load errors are returned as
 * "file:line:column: message", never logged here.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <gmime/gmime.h>
#include <pcre2.h>

#include "log.h"
#include "rules.h"

/* Bounds on one match, as LIBRARIES.md advises. */
#define RULES_MATCH_LIMIT 100000
#define RULES_DEPTH_LIMIT 1000
#define RULES_HEAP_LIMIT_KIB 20000
#define RULES_JIT_STACK_MIN (32 * 1024)
#define RULES_JIT_STACK_MAX (1024 * 1024)

enum rules_target {
	T_CLIENT_IP,
	T_CLIENT_NAME,
	T_HELO,
	T_ENV_FROM,
	T_ENV_RCPT,
	T_AUTH,
	T_MACRO,
	T_HEADER,
	T_HEADER_RAW,
	T_SUBJECT,
	T_FROM_NAME,
	T_FROM_ADDR,
	T_BODY,
	T_BODY_RAW,
	T_ATT_NAME,
	T_ATT_TYPE,
	T_ATT_SIZE,
	T_SIZE,
	T_VIRUS,
	T_SPF,
	T_DKIM,
	T_DMARC,
};

/* What operators a target takes. */
enum rules_kind {
	K_STRING,
	K_IP,
	K_NUMBER,
	K_BOOL,
};

static const struct rules_target_def {
	const char *name;
	enum rules_target target;
	enum rules_stage stage;
	enum rules_kind kind;
	bool arg; /* followed by a "name" */
} rules_targets[] = {
    {"client.ip", T_CLIENT_IP, RULES_CONNECT, K_IP, false},
    {"client.name", T_CLIENT_NAME, RULES_CONNECT, K_STRING, false},
    {"helo", T_HELO, RULES_HELO, K_STRING, false},
    {"envelope.from", T_ENV_FROM, RULES_MAIL, K_STRING, false},
    {"envelope.rcpt", T_ENV_RCPT, RULES_RCPT, K_STRING, false},
    {"auth", T_AUTH, RULES_MAIL, K_STRING, false},
    {"macro", T_MACRO, RULES_MAIL, K_STRING, true},
    {"header", T_HEADER, RULES_EOM, K_STRING, true},
    {"header.raw", T_HEADER_RAW, RULES_EOM, K_STRING, true},
    {"subject", T_SUBJECT, RULES_EOM, K_STRING, false},
    {"from.name", T_FROM_NAME, RULES_EOM, K_STRING, false},
    {"from.addr", T_FROM_ADDR, RULES_EOM, K_STRING, false},
    {"body", T_BODY, RULES_EOM, K_STRING, false},
    {"body.raw", T_BODY_RAW, RULES_EOM, K_STRING, false},
    {"attachment.name", T_ATT_NAME, RULES_EOM, K_STRING, false},
    {"attachment.type", T_ATT_TYPE, RULES_EOM, K_STRING, false},
    {"attachment.size", T_ATT_SIZE, RULES_EOM, K_NUMBER, false},
    {"size", T_SIZE, RULES_EOM, K_NUMBER, false},
    {"virus", T_VIRUS, RULES_EOM, K_BOOL, false},
    {"spf", T_SPF, RULES_EOM, K_STRING, false},
    {"dkim", T_DKIM, RULES_EOM, K_STRING, false},
    {"dmarc", T_DMARC, RULES_EOM, K_STRING, false},
};

enum rules_op {
	OP_MATCH,  /* =~ */
	OP_NMATCH, /* !~ */
	OP_EQ,
	OP_NE,
	OP_LT,
	OP_LE,
	OP_GT,
	OP_GE,
	OP_IN,
};

/* One test: TARGET OP OPERAND. */
struct rules_test {
	enum rules_target target;
	char *arg; /* header or macro name */
	enum rules_op op;
	pcre2_code *re;
	char *str;
	struct cidr *cidrs;
	size_t ncidrs;
	unsigned long long num;
	bool truth;
};

enum rules_node_kind { N_OR, N_AND, N_NOT, N_TEST };

/*
 * A chain of and (or of or) is one node with its terms in an array, not a
 * tree as deep as the chain is long: walks over the tree (evaluation,
 * freeing) recurse only as deep as not and parentheses nest, which
 * RULES_MAX_NESTING bounds, however many terms a condition has.
 */
struct rules_node {
	enum rules_node_kind kind;
	struct rules_node **kids; /* N_OR, N_AND: two or more; N_NOT: one */
	size_t nkids;
	struct rules_test test;
};

enum rules_act {
	A_ACCEPT,
	A_REJECT,
	A_TEMPFAIL,
	A_DISCARD,
	A_QUARANTINE,
	A_SCORE,
	A_HEADER,
	A_TAG,
};

struct rules_action {
	enum rules_act kind;
	char rcode[4], xcode[10];
	char *text; /* reply text, quarantine reason, tag, header value */
	char *hname;
	double score;
};

struct rules_rule {
	char *name;
	const char *file; /* owned by the set */
	int line;
	enum rules_stage stage;
	struct rules_node *cond;
	struct rules_action *acts;
	size_t nacts;
	double score;  /* the sum of its score actions */
	bool decisive; /* has accept, reject, tempfail, discard, quarantine */
};

struct rules {
	struct rules_rule *rules;
	size_t nrules;
	char **files;
	size_t nfiles;
};

/*
 * Lexer and parser.
 */

enum rules_tok {
	TK_EOF,
	TK_WORD,   /* letters, digits and _ . : / + - */
	TK_STRING, /* "..." */
	TK_REGEX,  /* /.../flags, only after =~ and !~ */
	TK_LBRACE,
	TK_RBRACE,
	TK_LPAREN,
	TK_RPAREN,
	TK_COMMA,
	TK_ARROW, /* => */
	TK_OP,	  /* a comparison: see op */
	TK_ERROR, /* the lexer reported an error */
};

struct rules_parser {
	const char *file;
	const char *p, *end;
	int line, col; /* of p */
	struct errlist *errs;
	int nerrs;

	/* The current token. */
	enum rules_tok tok;
	enum rules_op op;
	struct buf text; /* word, string or pattern */
	uint32_t flags;	 /* regex compile options */
	int tline, tcol; /* where the token starts */
	int pcol;	 /* where a pattern's text starts */
	bool want_regex; /* the previous token was =~ or !~ */
	bool quiet;	 /* skipping after an error: report nothing */
	int depth;	 /* nesting of not and parentheses */
	int ntests;	 /* tests so far in the rule's condition */
};

/* Deeper conditions are an error, not a stack overflow. */
#define RULES_MAX_NESTING 200

/* More tests in one rule's condition are an error: bounds its cost. */
#define RULES_MAX_TESTS 1000

static void rules_node_free(struct rules_node *n);

/* Reports an error at line:col unless already skipping after one. */
static void __attribute__((format(printf, 4, 5)))
rules_error(struct rules_parser *ps, int line, int col, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (ps->quiet)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	errlist_add(ps->errs, "%s:%d:%d: %s", ps->file, line, col, msg);
	ps->nerrs++;
	ps->quiet = true;
}

/* Moves past one byte, keeping line and column. */
static void
rules_adv(struct rules_parser *ps)
{
	if (*ps->p == '\n') {
		ps->line++;
		ps->col = 1;
	} else
		ps->col++;
	ps->p++;
}

static bool
rules_word_char(int c)
{
	return isalnum(c) || c == '_' || c == '.' || c == ':' || c == '/' ||
	       c == '+' || c == '-';
}

/* Skips white space and comments. */
static void
rules_skip_space(struct rules_parser *ps)
{
	while (ps->p < ps->end) {
		if (*ps->p == '#') {
			while (ps->p < ps->end && *ps->p != '\n')
				rules_adv(ps);
		} else if (isspace((unsigned char)*ps->p))
			rules_adv(ps);
		else
			break;
	}
}

/* A "string": backslash escapes the next byte; ends at the line's end. */
static void
rules_lex_string(struct rules_parser *ps)
{
	rules_adv(ps);
	while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\n') {
		if (*ps->p == '\\' && ps->p + 1 < ps->end && ps->p[1] != '\n')
			rules_adv(ps);
		buf_append(&ps->text, ps->p, 1);
		rules_adv(ps);
	}
	if (ps->p >= ps->end || *ps->p != '"') {
		rules_error(ps, ps->tline, ps->tcol, "unterminated string");
		ps->tok = TK_ERROR;
		return;
	}
	rules_adv(ps);
	if (memchr(ps->text.data ? ps->text.data : "", '\0', ps->text.len)) {
		rules_error(ps, ps->tline, ps->tcol, "NUL byte in a string");
		ps->tok = TK_ERROR;
		return;
	}
	ps->tok = TK_STRING;
}

/* A /regex/flags: kept as written (PCRE2 reads \/ as /), on one line. */
static void
rules_lex_regex(struct rules_parser *ps)
{
	rules_adv(ps);
	ps->pcol = ps->col;
	while (ps->p < ps->end && *ps->p != '/' && *ps->p != '\n') {
		if (*ps->p == '\\' && ps->p + 1 < ps->end && ps->p[1] != '\n') {
			buf_append(&ps->text, ps->p, 1);
			rules_adv(ps);
		}
		buf_append(&ps->text, ps->p, 1);
		rules_adv(ps);
	}
	if (ps->p >= ps->end || *ps->p != '/') {
		rules_error(ps, ps->tline, ps->tcol, "unterminated regex");
		ps->tok = TK_ERROR;
		return;
	}
	rules_adv(ps);
	ps->flags = 0;
	while (ps->p < ps->end && isalpha((unsigned char)*ps->p)) {
		switch (*ps->p) {
		case 'i':
			ps->flags |= PCRE2_CASELESS;
			break;
		case 'm':
			ps->flags |= PCRE2_MULTILINE;
			break;
		case 's':
			ps->flags |= PCRE2_DOTALL;
			break;
		case 'x':
			ps->flags |= PCRE2_EXTENDED;
			break;
		default:
			rules_error(ps, ps->line, ps->col,
				    "unknown regex flag '%c'", *ps->p);
			ps->tok = TK_ERROR;
			return;
		}
		rules_adv(ps);
	}
	ps->tok = TK_REGEX;
}

/* Two-byte and one-byte operators; returns false when none is at p. */
static bool
rules_lex_op(struct rules_parser *ps)
{
	static const struct {
		const char *s;
		enum rules_tok tok;
		enum rules_op op;
	} ops[] = {
	    {"=>", TK_ARROW, OP_EQ},  {"=~", TK_OP, OP_MATCH},
	    {"!~", TK_OP, OP_NMATCH}, {"==", TK_OP, OP_EQ},
	    {"!=", TK_OP, OP_NE},     {"<=", TK_OP, OP_LE},
	    {">=", TK_OP, OP_GE},     {"<", TK_OP, OP_LT},
	    {">", TK_OP, OP_GT},
	};

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		size_t n = strlen(ops[i].s);

		if ((size_t)(ps->end - ps->p) >= n &&
		    memcmp(ps->p, ops[i].s, n) == 0) {
			ps->tok = ops[i].tok;
			ps->op = ops[i].op;
			for (size_t k = 0; k < n; k++)
				rules_adv(ps);
			return true;
		}
	}
	return false;
}

/* Reads the next token into ps. */
static void
rules_next(struct rules_parser *ps)
{
	bool want_regex = ps->want_regex;

	ps->want_regex = false;
	buf_reset(&ps->text);
	buf_append(&ps->text, "", 0);
	rules_skip_space(ps);
	ps->tline = ps->line;
	ps->tcol = ps->col;
	if (ps->p >= ps->end) {
		ps->tok = TK_EOF;
		return;
	}
	if (want_regex && *ps->p == '/') {
		rules_lex_regex(ps);
		return;
	}
	if (*ps->p == '"') {
		rules_lex_string(ps);
		return;
	}
	if (rules_word_char((unsigned char)*ps->p)) {
		while (ps->p < ps->end &&
		       rules_word_char((unsigned char)*ps->p)) {
			buf_append(&ps->text, ps->p, 1);
			rules_adv(ps);
		}
		ps->tok = TK_WORD;
		return;
	}
	if (rules_lex_op(ps)) {
		ps->want_regex = ps->tok == TK_OP &&
				 (ps->op == OP_MATCH || ps->op == OP_NMATCH);
		return;
	}
	switch (*ps->p) {
	case '{':
		ps->tok = TK_LBRACE;
		break;
	case '}':
		ps->tok = TK_RBRACE;
		break;
	case '(':
		ps->tok = TK_LPAREN;
		break;
	case ')':
		ps->tok = TK_RPAREN;
		break;
	case ',':
		ps->tok = TK_COMMA;
		break;
	default:
		rules_error(ps, ps->line, ps->col, "unexpected character '%c'",
			    isprint((unsigned char)*ps->p) ? *ps->p : '?');
		ps->tok = TK_ERROR;
	}
	rules_adv(ps);
}

static bool
rules_is_word(const struct rules_parser *ps, const char *w)
{
	return ps->tok == TK_WORD && strcmp(ps->text.data, w) == 0;
}

/* A short description of the current token for an error. */
static const char *
rules_tok_desc(const struct rules_parser *ps, char *b, size_t n)
{
	switch (ps->tok) {
	case TK_EOF:
		return "end of file";
	case TK_WORD:
	case TK_STRING:
		snprintf(b, n, "\"%.40s\"", ps->text.data);
		return b;
	case TK_REGEX:
		return "a regex";
	case TK_LBRACE:
		return "\"{\"";
	case TK_RBRACE:
		return "\"}\"";
	case TK_LPAREN:
		return "\"(\"";
	case TK_RPAREN:
		return "\")\"";
	case TK_COMMA:
		return "\",\"";
	case TK_ARROW:
		return "\"=>\"";
	case TK_OP:
		return "an operator";
	default:
		return "an error";
	}
}

/* Reports "expected WHAT, got TOKEN" at the current token. */
static void
rules_expected(struct rules_parser *ps, const char *what)
{
	char b[64];

	rules_error(ps, ps->tline, ps->tcol, "expected %s, got %s", what,
		    rules_tok_desc(ps, b, sizeof(b)));
}

static const char *
rules_op_name(enum rules_op op)
{
	static const char *names[] = {"=~", "!~", "==", "!=", "<",
				      "<=", ">",  ">=", "in"};

	return names[op];
}

/* "10", "10K", "2M", "1G": bytes; returns -1 when not a size. */
static int
rules_parse_size(const char *s, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	unsigned long long mult = 1;

	if (*end == 'K' || *end == 'k')
		mult = 1024ULL, end++;
	else if (*end == 'M' || *end == 'm')
		mult = 1024ULL * 1024, end++;
	else if (*end == 'G' || *end == 'g')
		mult = 1024ULL * 1024 * 1024, end++;
	if (*end != '\0' || v > (1ULL << 52) / mult)
		return -1; /* junk, or larger than any message */
	v *= mult;
	*out = v;
	return 0;
}

/* Compiles the current TK_REGEX token into t->re. */
static int
rules_compile(struct rules_parser *ps, struct rules_test *t)
{
	int err;
	PCRE2_SIZE off;
	PCRE2_UCHAR msg[256];

	t->re = pcre2_compile((PCRE2_SPTR)ps->text.data, ps->text.len,
			      PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | ps->flags,
			      &err, &off, NULL);
	if (t->re == NULL) {
		pcre2_get_error_message(err, msg, sizeof(msg));
		rules_error(ps, ps->tline, ps->pcol + (int)off, "bad regex: %s",
			    (char *)msg);
		return -1;
	}
	/* Without JIT (not built in) the interpreter runs: slower, bounded. */
	(void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
	return 0;
}

/* The operand list of "in": CIDR[, CIDR...], bare or quoted. */
static int
rules_parse_cidrs(struct rules_parser *ps, struct rules_test *t)
{
	for (;;) {
		struct cidr c;

		rules_next(ps);
		if (ps->tok != TK_WORD && ps->tok != TK_STRING) {
			rules_expected(ps, "an address range");
			return -1;
		}
		if (util_cidr_parse(ps->text.data, &c) < 0) {
			rules_error(ps, ps->tline, ps->tcol, "bad CIDR \"%s\"",
				    ps->text.data);
			return -1;
		}
		t->cidrs = xrealloc(t->cidrs, (t->ncidrs + 1) * sizeof(c));
		t->cidrs[t->ncidrs++] = c;
		rules_next(ps);
		if (ps->tok != TK_COMMA)
			return 0;
	}
}

/* Checks that the operator suits the target's kind. */
static bool
rules_op_fits(enum rules_kind kind, enum rules_op op)
{
	switch (kind) {
	case K_STRING:
		return op <= OP_NE;
	case K_IP:
		return op <= OP_NE || op == OP_IN;
	case K_NUMBER:
		return op >= OP_EQ && op <= OP_GE;
	case K_BOOL:
		return op == OP_EQ || op == OP_NE;
	}
	return false;
}

/* The operand after the operator; leaves the next token current. */
static int
rules_parse_operand(struct rules_parser *ps, enum rules_kind kind,
		    struct rules_test *t)
{
	if (t->op == OP_IN)
		return rules_parse_cidrs(ps, t);
	rules_next(ps);
	if (t->op == OP_MATCH || t->op == OP_NMATCH) {
		if (ps->tok != TK_REGEX) {
			if (ps->tok != TK_ERROR)
				rules_expected(ps, "a /regex/");
			return -1;
		}
		if (rules_compile(ps, t) < 0)
			return -1;
	} else if (kind == K_NUMBER) {
		if (ps->tok != TK_WORD ||
		    rules_parse_size(ps->text.data, &t->num) < 0) {
			rules_expected(ps, "a size (K, M, G)");
			return -1;
		}
	} else if (kind == K_BOOL) {
		if (!rules_is_word(ps, "true") && !rules_is_word(ps, "false")) {
			rules_expected(ps, "true or false");
			return -1;
		}
		t->truth = rules_is_word(ps, "true");
	} else {
		if (ps->tok != TK_STRING) {
			if (ps->tok != TK_ERROR)
				rules_expected(ps, "a \"string\"");
			return -1;
		}
		t->str = xstrdup(ps->text.data);
	}
	rules_next(ps);
	return 0;
}

/* TARGET OP OPERAND; raises *stage to the target's stage. */
static struct rules_node *
rules_parse_test(struct rules_parser *ps, enum rules_stage *stage)
{
	const struct rules_target_def *d = NULL;
	struct rules_node *n;
	char tname[64];

	if (ps->tok != TK_WORD) {
		if (ps->tok != TK_ERROR)
			rules_expected(ps, "a test");
		return NULL;
	}
	if (++ps->ntests > RULES_MAX_TESTS) {
		rules_error(ps, ps->tline, ps->tcol,
			    "condition has more than %d tests",
			    RULES_MAX_TESTS);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(rules_targets) / sizeof(*d); i++)
		if (strcmp(ps->text.data, rules_targets[i].name) == 0)
			d = &rules_targets[i];
	if (d == NULL) {
		rules_error(ps, ps->tline, ps->tcol, "unknown target \"%.40s\"",
			    ps->text.data);
		return NULL;
	}
	snprintf(tname, sizeof(tname), "%s", d->name);
	n = xcalloc(1, sizeof(*n));
	n->kind = N_TEST;
	n->test.target = d->target;
	if (d->stage > *stage)
		*stage = d->stage;
	rules_next(ps);
	if (d->arg) {
		if (ps->tok != TK_STRING || ps->text.len == 0) {
			rules_expected(ps, "a \"name\" after the target");
			goto fail;
		}
		n->test.arg = xstrdup(ps->text.data);
		rules_next(ps);
	}

	/* The operator, then what it wants. */
	if (rules_is_word(ps, "in"))
		n->test.op = OP_IN;
	else if (ps->tok == TK_OP)
		n->test.op = ps->op;
	else {
		rules_expected(ps, "an operator");
		goto fail;
	}
	if (!rules_op_fits(d->kind, n->test.op)) {
		rules_error(ps, ps->tline, ps->tcol,
			    "operator \"%s\" does not apply to %s",
			    rules_op_name(n->test.op), tname);
		goto fail;
	}
	if (rules_parse_operand(ps, d->kind, &n->test) < 0)
		goto fail;
	return n;
fail:
	rules_node_free(n);
	return NULL;
}

static struct rules_node *rules_parse_or(struct rules_parser *ps,
					 enum rules_stage *stage);

/* not X, ( X ), or a test. */
static struct rules_node *rules_parse_unary1(struct rules_parser *ps,
					     enum rules_stage *stage);

/* Bounds the nesting of not and parentheses: the parser recurses. */
static struct rules_node *
rules_parse_unary(struct rules_parser *ps, enum rules_stage *stage)
{
	struct rules_node *n;
	bool nests = rules_is_word(ps, "not") || ps->tok == TK_LPAREN;

	/* A test itself is no level: 200 nots or parentheses are taken. */
	if (!nests)
		return rules_parse_unary1(ps, stage);
	if (ps->depth >= RULES_MAX_NESTING) {
		rules_error(ps, ps->tline, ps->tcol,
			    "condition nested deeper than %d",
			    RULES_MAX_NESTING);
		return NULL;
	}
	ps->depth++;
	n = rules_parse_unary1(ps, stage);
	ps->depth--;
	return n;
}

static struct rules_node *
rules_parse_unary1(struct rules_parser *ps, enum rules_stage *stage)
{
	struct rules_node *n, *c;

	if (rules_is_word(ps, "not")) {
		rules_next(ps);
		if ((c = rules_parse_unary(ps, stage)) == NULL)
			return NULL;
		n = xcalloc(1, sizeof(*n));
		n->kind = N_NOT;
		n->kids = xmalloc(sizeof(*n->kids));
		n->kids[0] = c;
		n->nkids = 1;
		return n;
	}
	if (ps->tok == TK_LPAREN) {
		rules_next(ps);
		if ((n = rules_parse_or(ps, stage)) == NULL)
			return NULL;
		if (ps->tok != TK_RPAREN) {
			rules_expected(ps, "\")\"");
			rules_node_free(n);
			return NULL;
		}
		rules_next(ps);
		return n;
	}
	return rules_parse_test(ps, stage);
}

/*
 * X and Y ..., or X or Y ...: one node over all the terms, in order (a
 * single term is returned as it is).
 */
static struct rules_node *
rules_parse_binary(struct rules_parser *ps, enum rules_stage *stage,
		   enum rules_node_kind kind)
{
	const char *word = kind == N_OR ? "or" : "and";
	struct rules_node *l, *r, *n = NULL;
	size_t cap = 0;

	l = kind == N_OR ? rules_parse_binary(ps, stage, N_AND)
			 : rules_parse_unary(ps, stage);
	while (l != NULL && rules_is_word(ps, word)) {
		rules_next(ps);
		r = kind == N_OR ? rules_parse_binary(ps, stage, N_AND)
				 : rules_parse_unary(ps, stage);
		if (r == NULL) {
			rules_node_free(n != NULL ? n : l);
			return NULL;
		}
		if (n == NULL) {
			n = xcalloc(1, sizeof(*n));
			n->kind = kind;
			cap = 4;
			n->kids = xmalloc(cap * sizeof(*n->kids));
			n->kids[n->nkids++] = l;
		} else if (n->nkids == cap) {
			cap *= 2;
			n->kids = xrealloc(n->kids, cap * sizeof(*n->kids));
		}
		n->kids[n->nkids++] = r;
	}
	return n != NULL ? n : l;
}

static struct rules_node *
rules_parse_or(struct rules_parser *ps, enum rules_stage *stage)
{
	return rules_parse_binary(ps, stage, N_OR);
}

/* [CODE XCODE] "text" after reject or tempfail. */
static int
rules_parse_reply(struct rules_parser *ps, struct rules_action *a)
{
	char cls = a->kind == A_REJECT ? '5' : '4';

	snprintf(a->rcode, sizeof(a->rcode), "%s",
		 a->kind == A_REJECT ? "550" : "451");
	snprintf(a->xcode, sizeof(a->xcode), "%s",
		 a->kind == A_REJECT ? "5.7.1" : "4.7.1");
	rules_next(ps);
	if (ps->tok == TK_WORD) {
		const char *c = ps->text.data;
		unsigned x, y;
		char tail;

		if (strlen(c) != 3 || c[0] != cls ||
		    !isdigit((unsigned char)c[1]) ||
		    !isdigit((unsigned char)c[2])) {
			rules_error(ps, ps->tline, ps->tcol,
				    "bad reply code \"%.20s\": expected %cXX",
				    c, cls);
			return -1;
		}
		memcpy(a->rcode, c, 4);
		rules_next(ps);
		if (ps->tok != TK_WORD || ps->text.data[0] != cls ||
		    ps->text.len >= sizeof(a->xcode) ||
		    sscanf(ps->text.data + 1, ".%3u.%3u%c", &x, &y, &tail) !=
			2) {
			rules_expected(ps, cls == '5' ? "an enhanced code 5.X.Y"
						      : "an enhanced code "
							"4.X.Y");
			return -1;
		}
		snprintf(a->xcode, sizeof(a->xcode), "%s", ps->text.data);
		rules_next(ps);
	}
	if (ps->tok != TK_STRING) {
		if (ps->tok != TK_ERROR)
			rules_expected(ps, "a \"reply text\"");
		return -1;
	}
	if (ps->text.len >= 400) {
		rules_error(ps, ps->tline, ps->tcol,
			    "reply text longer than 399 bytes");
		return -1;
	}
	for (const char *q = ps->text.data; *q != '\0'; q++)
		if (*q == '%' && *++q != '%') {
			/* libmilter ignores a reply text with a lone '%'. */
			rules_error(ps, ps->tline, ps->tcol,
				    "reply text: write %%%% for a %%");
			return -1;
		}
	/* Stored plain: "%%" is one percent sign, escaped again for
	 * libmilter when the reply is sent. */
	a->text = xstrdup(ps->text.data);
	for (char *w = a->text, *q = a->text;; q++) {
		*w++ = *q;
		if (*q == '\0')
			break;
		if (q[0] == '%' && q[1] == '%')
			q++;
	}
	rules_next(ps);
	return 0;
}

/* Headers of edmilter's own, and those a rule must not duplicate. */
static bool
rules_header_reserved(const char *s)
{
	static const char *names[] = {"From",
				      "Subject",
				      "Received",
				      "Authentication-Results",
				      "Received-SPF",
				      "Return-Path",
				      "Message-ID",
				      "Date",
				      "To"};

	if (strncasecmp(s, "X-Virus-", 8) == 0 ||
	    strncasecmp(s, "X-Spam-", 7) == 0 ||
	    strncasecmp(s, "X-Edmilter-", 11) == 0)
		return true;
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
		if (strcasecmp(s, names[i]) == 0)
			return true;
	return false;
}

/* A header name: printable ASCII without ':' or space. */
static bool
rules_header_name_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s <= ' ' || *s >= 0x7f || *s == ':')
			return false;
	return true;
}

/* Takes a "string" argument into *dst; the next token is current after. */
static int
rules_parse_str_arg(struct rules_parser *ps, char **dst, const char *what)
{
	rules_next(ps);
	if (ps->tok != TK_STRING) {
		if (ps->tok != TK_ERROR)
			rules_expected(ps, what);
		return -1;
	}
	*dst = xstrdup(ps->text.data);
	rules_next(ps);
	return 0;
}

/* The argument of the score action: a decimal, maybe negative. */
static int
rules_parse_score(struct rules_parser *ps, struct rules_action *a)
{
	char *end;

	rules_next(ps);
	if (ps->tok == TK_WORD) {
		a->score = strtod(ps->text.data, &end);
		if (end != ps->text.data && *end == '\0' &&
		    isfinite(a->score) &&
		    (isdigit((unsigned char)ps->text.data[0]) ||
		     ps->text.data[0] == '-' || ps->text.data[0] == '+')) {
			rules_next(ps);
			return 0;
		}
	}
	rules_expected(ps, "a number after score");
	return -1;
}

/* One action; the current token is its word. */
static int
rules_parse_action(struct rules_parser *ps, struct rules_action *a)
{
	static const struct {
		const char *name;
		enum rules_act kind;
	} acts[] = {
	    {"accept", A_ACCEPT},	  {"reject", A_REJECT},
	    {"tempfail", A_TEMPFAIL},	  {"discard", A_DISCARD},
	    {"quarantine", A_QUARANTINE}, {"score", A_SCORE},
	    {"header", A_HEADER},	  {"tag", A_TAG},
	};
	size_t i;

	for (i = 0; i < sizeof(acts) / sizeof(acts[0]); i++)
		if (rules_is_word(ps, acts[i].name))
			break;
	if (i == sizeof(acts) / sizeof(acts[0])) {
		char b[64];

		rules_error(ps, ps->tline, ps->tcol, "unknown action %s",
			    rules_tok_desc(ps, b, sizeof(b)));
		return -1;
	}
	a->kind = acts[i].kind;
	switch (a->kind) {
	case A_REJECT:
	case A_TEMPFAIL:
		return rules_parse_reply(ps, a);
	case A_QUARANTINE:
		rules_next(ps);
		if (ps->tok == TK_STRING) {
			a->text = xstrdup(ps->text.data);
			rules_next(ps);
		}
		return 0;
	case A_SCORE:
		return rules_parse_score(ps, a);
	case A_TAG:
		return rules_parse_str_arg(ps, &a->text, "a \"tag\"");
	case A_HEADER:
		if (rules_parse_str_arg(ps, &a->hname, "a \"header name\"") < 0)
			return -1;
		if (!rules_header_name_ok(a->hname)) {
			rules_error(ps, ps->tline, ps->tcol,
				    "bad header name \"%.40s\"", a->hname);
			return -1;
		}
		if (rules_header_reserved(a->hname)) {
			rules_error(ps, ps->tline, ps->tcol,
				    "header \"%.40s\" is not a rule's to add",
				    a->hname);
			return -1;
		}
		if (ps->tok != TK_STRING) {
			if (ps->tok != TK_ERROR)
				rules_expected(ps, "a \"header value\"");
			return -1;
		}
		a->text = xstrdup(ps->text.data);
		rules_next(ps);
		return 0;
	default:
		rules_next(ps);
		return 0;
	}
}

static void
rules_rule_free(struct rules_rule *r)
{
	free(r->name);
	rules_node_free(r->cond);
	for (size_t i = 0; i < r->nacts; i++) {
		free(r->acts[i].text);
		free(r->acts[i].hname);
	}
	free(r->acts);
}

/* => ACTION [ACTION ...] up to the closing brace. */
static int
rules_parse_actions(struct rules_parser *ps, struct rules_rule *r)
{
	if (ps->tok != TK_ARROW) {
		if (ps->tok != TK_ERROR)
			rules_expected(ps, "\"=>\" before the actions");
		return -1;
	}
	rules_next(ps);
	if (ps->tok == TK_RBRACE) {
		rules_expected(ps, "an action");
		return -1;
	}
	while (ps->tok != TK_RBRACE) {
		struct rules_action *a;

		if (ps->tok == TK_EOF) {
			rules_expected(ps, "\"}\"");
			return -1;
		}
		int line = ps->tline, col = ps->tcol;

		r->acts = xrealloc(r->acts, (r->nacts + 1) * sizeof(*a));
		a = &r->acts[r->nacts++];
		memset(a, 0, sizeof(*a));
		if (rules_parse_action(ps, a) < 0)
			return -1;
		if (a->kind == A_SCORE)
			r->score += a->score;
		if (a->kind <= A_QUARANTINE) {
			if (r->decisive) {
				rules_error(ps, line, col,
					    "rule %s has two decisive actions",
					    r->name);
				return -1;
			}
			r->decisive = true;
		}
	}
	return 0;
}

/* Whether a rule of this name is already in the set; names its place. */
static const struct rules_rule *
rules_find(const struct rules *rs, const char *name)
{
	for (size_t i = 0; i < rs->nrules; i++)
		if (strcmp(rs->rules[i].name, name) == 0)
			return &rs->rules[i];
	return NULL;
}

static bool
rules_name_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return false;
	return true;
}

/* rule NAME { CONDITION => ACTIONS }; the current token is "rule". */
static int
rules_parse_rule(struct rules_parser *ps, struct rules *rs)
{
	struct rules_rule r = {0};
	const struct rules_rule *dup;

	r.file = ps->file;
	r.line = ps->tline;
	rules_next(ps);
	if (ps->tok != TK_WORD || !rules_name_ok(ps->text.data)) {
		rules_expected(ps, "a rule name (letters, digits, _ and -)");
		return -1;
	}
	if ((dup = rules_find(rs, ps->text.data)) != NULL) {
		rules_error(ps, ps->tline, ps->tcol,
			    "duplicate rule name \"%s\" (first at %s:%d)",
			    ps->text.data, dup->file, dup->line);
		return -1;
	}
	r.name = xstrdup(ps->text.data);
	rules_next(ps);
	if (ps->tok != TK_LBRACE) {
		rules_expected(ps, "\"{\"");
		goto fail;
	}
	rules_next(ps);
	r.stage = RULES_CONNECT;
	ps->ntests = 0;
	if ((r.cond = rules_parse_or(ps, &r.stage)) == NULL)
		goto fail;
	if (rules_parse_actions(ps, &r) < 0)
		goto fail;
	rules_next(ps);
	rs->rules = xrealloc(rs->rules, (rs->nrules + 1) * sizeof(r));
	rs->rules[rs->nrules++] = r;
	return 0;
fail:
	rules_rule_free(&r);
	return -1;
}

/* Parses one file's text into rs; returns the number of errors. */
static int
rules_parse(const char *file, const char *text, size_t len, struct rules *rs,
	    struct errlist *errs)
{
	struct rules_parser ps = {0};

	ps.file = file;
	ps.p = text;
	ps.end = text + len;
	ps.line = ps.col = 1;
	ps.errs = errs;
	rules_next(&ps);
	while (ps.tok != TK_EOF) {
		if (!rules_is_word(&ps, "rule")) {
			/* Junk between rules: go on at the next "rule". */
			rules_expected(&ps, "\"rule\"");
			while (ps.tok != TK_EOF && !rules_is_word(&ps, "rule"))
				rules_next(&ps);
			ps.quiet = false;
			continue;
		}
		if (rules_parse_rule(&ps, rs) == 0)
			continue;

		/*
		 * An error inside a rule: go on after its "}", or at a
		 * "rule" that starts a line if the brace is missing.
		 */
		while (ps.tok != TK_EOF && ps.tok != TK_RBRACE &&
		       !(ps.tcol == 1 && rules_is_word(&ps, "rule")))
			rules_next(&ps);
		if (ps.tok == TK_RBRACE)
			rules_next(&ps);
		ps.quiet = false;
	}
	buf_free(&ps.text);
	return ps.nerrs;
}

/* Reads a file whole; -1 (errno set) when it cannot be read. */
static int
rules_slurp(const char *path, struct buf *b)
{
	FILE *fp = fopen(path, "rb");
	char chunk[8192];
	size_t n;
	int err;

	if (fp == NULL)
		return -1;
	buf_append(b, "", 0);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_append(b, chunk, n);
	err = ferror(fp) ? errno : 0;
	fclose(fp);
	errno = err;
	return err ? -1 : 0;
}

static int
rules_load_file(const char *path, struct rules *rs, struct errlist *errs)
{
	struct buf b = {0};
	char *file;
	int n;

	if (rules_slurp(path, &b) < 0) {
		errlist_add(errs, "%s: cannot read: %s", path, strerror(errno));
		buf_free(&b);
		return 1;
	}
	file = xstrdup(path);
	rs->files = xrealloc(rs->files, (rs->nfiles + 1) * sizeof(char *));
	rs->files[rs->nfiles++] = file;
	n = rules_parse(file, b.data, b.len, rs, errs);
	buf_free(&b);
	return n;
}

static int
rules_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

bool
rules_is_file_name(const char *name)
{
	size_t l = strlen(name);

	return name[0] != '.' && l > 6 && strcmp(name + l - 6, ".rules") == 0;
}

/* Every *.rules file of a folder, in name order. */
static int
rules_load_dir(const char *path, DIR *d, struct rules *rs, struct errlist *errs)
{
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	int nerr = 0;

	while ((de = readdir(d)) != NULL) {
		if (!rules_is_file_name(de->d_name))
			continue;
		names = xrealloc(names, (n + 1) * sizeof(*names));
		names[n++] = xstrdup(de->d_name);
	}
	if (n > 0)
		qsort(names, n, sizeof(*names), rules_cmp);
	for (size_t i = 0; i < n; i++) {
		struct buf p = {0};

		buf_printf(&p, "%s/%s", path, names[i]);
		nerr += rules_load_file(p.data, rs, errs);
		buf_free(&p);
		free(names[i]);
	}
	free(names);
	return nerr;
}

int
rules_load(const char *path, struct rules **out, struct errlist *errs)
{
	struct rules *rs = xcalloc(1, sizeof(*rs));
	DIR *d;
	int nerr;

	*out = NULL;
	if ((d = opendir(path)) != NULL) {
		nerr = rules_load_dir(path, d, rs, errs);
		closedir(d);
	} else if (errno == ENOTDIR)
		nerr = rules_load_file(path, rs, errs);
	else {
		errlist_add(errs, "%s: cannot open: %s", path, strerror(errno));
		nerr = 1;
	}
	if (nerr > 0) {
		rules_free(rs);
		return -1;
	}
	*out = rs;
	return 0;
}

/* Recurses as deep as not and parentheses nest (see struct rules_node). */
static void
rules_node_free(struct rules_node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		rules_node_free(n->kids[i]);
	free(n->kids);
	free(n->test.arg);
	free(n->test.str);
	free(n->test.cidrs);
	pcre2_code_free(n->test.re);
	free(n);
}

void
rules_free(struct rules *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nrules; i++)
		rules_rule_free(&r->rules[i]);
	free(r->rules);
	for (size_t i = 0; i < r->nfiles; i++)
		free(r->files[i]);
	free(r->files);
	free(r);
}

enum rules_stage
rules_earliest_needed(const struct rules *r)
{
	enum rules_stage s = RULES_EOM;

	for (size_t i = 0; r != NULL && i < r->nrules; i++)
		if (r->rules[i].stage < s)
			s = r->rules[i].stage;
	return s;
}

/*
 * Matching.
 */

/* One thread's match state, made on first use, freed at thread exit. */
struct rules_tls {
	pcre2_match_data *md;
	pcre2_match_context *mctx;
	pcre2_jit_stack *js;
};

static pthread_key_t rules_key;
static pthread_once_t rules_once = PTHREAD_ONCE_INIT;

static void
rules_tls_free(void *p)
{
	struct rules_tls *t = p;

	if (t == NULL)
		return;
	pcre2_match_data_free(t->md);
	pcre2_match_context_free(t->mctx);
	pcre2_jit_stack_free(t->js);
	free(t);
}

static void
rules_once_init(void)
{
	(void)pthread_key_create(&rules_key, rules_tls_free);
	mime_init();
}

/* This thread's match state, or NULL when it cannot be made. */
static struct rules_tls *
rules_tls(void)
{
	struct rules_tls *t = pthread_getspecific(rules_key);

	if (t != NULL)
		return t;
	t = xcalloc(1, sizeof(*t));
	t->md = pcre2_match_data_create(1, NULL);
	t->mctx = pcre2_match_context_create(NULL);
	t->js = pcre2_jit_stack_create(RULES_JIT_STACK_MIN, RULES_JIT_STACK_MAX,
				       NULL);
	if (t->md == NULL || t->mctx == NULL) {
		rules_tls_free(t);
		return NULL;
	}
	pcre2_set_match_limit(t->mctx, RULES_MATCH_LIMIT);
	pcre2_set_depth_limit(t->mctx, RULES_DEPTH_LIMIT);
	pcre2_set_heap_limit(t->mctx, RULES_HEAP_LIMIT_KIB);
	if (t->js != NULL)
		pcre2_jit_stack_assign(t->mctx, NULL, t->js);
	if (pthread_setspecific(rules_key, t) != 0) {
		rules_tls_free(t);
		return NULL;
	}
	return t;
}

/* The state of one evaluation, with values computed once on demand. */
struct rules_ctx {
	const struct rules_input *in;
	enum rules_stage stage;
	struct rules_outcome *out;
	const struct rules_rule *rule;
	const char *qid;
	bool warned; /* this rule already logged a limit */

	char **dec; /* decoded header values, by header index */
	bool from_done;
	char **from_names, **from_addrs;
	size_t nfrom_names, nfrom_addrs;

	bool have_matched;
	char matched[128];
};

/* Records the first text that made the rule match. */
static void
rules_note(struct rules_ctx *c, const char *p, size_t len)
{
	char *tmp;

	if (c->have_matched)
		return;
	/* One byte more than fits, so that a cut is marked. */
	if (len > 128)
		len = 128;
	tmp = xstrndup(p, len);
	util_safe(c->matched, sizeof(c->matched), tmp, false);
	free(tmp);
	c->have_matched = true;
}

/* A regex against one value; a limit hit counts as no match. */
static bool
rules_re_match(struct rules_ctx *c, const pcre2_code *re, const char *p,
	       size_t len)
{
	struct rules_tls *t = rules_tls();
	PCRE2_SIZE *ov;
	int rc;

	if (t == NULL) {
		log_qid(LOG_WARNING, c->qid, "rules: %s: no memory to match",
			c->rule->name);
		return false;
	}
	rc = pcre2_match(re, (PCRE2_SPTR)(p ? p : ""), p ? len : 0, 0, 0, t->md,
			 t->mctx);
	if (rc >= 0) {
		ov = pcre2_get_ovector_pointer(t->md);
		if (ov[1] >= ov[0])
			rules_note(c, p + ov[0], ov[1] - ov[0]);
		return true;
	}
	if (rc == PCRE2_ERROR_NOMATCH)
		return false;
	c->out->limit_hit = true;
	if (c->warned)
		return false;
	c->warned = true;
	if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
	    rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT)
		log_qid(LOG_WARNING, c->qid, "rules: %s: pattern hit a limit",
			c->rule->name);
	else
		log_qid(LOG_WARNING, c->qid,
			"rules: %s: pattern: match error %d", c->rule->name,
			rc);
	return false;
}

/* A positive string test (=~ or ==) against one value. */
static bool
rules_str_test(struct rules_ctx *c, const struct rules_test *t, const char *p,
	       size_t len)
{
	if (p == NULL)
		return false;
	if (t->re != NULL)
		return rules_re_match(c, t->re, p, len);
	if (strlen(t->str) == len && memcmp(t->str, p, len) == 0) {
		rules_note(c, p, len);
		return true;
	}
	return false;
}

static bool
rules_str_test_s(struct rules_ctx *c, const struct rules_test *t, const char *s)
{
	return s != NULL && rules_str_test(c, t, s, strlen(s));
}

/* A positive numeric test (the operator's own sense). */
static bool
rules_num_test(struct rules_ctx *c, const struct rules_test *t,
	       unsigned long long v)
{
	bool r;
	char b[32];

	switch (t->op) {
	case OP_LT:
		r = v < t->num;
		break;
	case OP_LE:
		r = v <= t->num;
		break;
	case OP_GT:
		r = v > t->num;
		break;
	case OP_GE:
		r = v >= t->num;
		break;
	default: /* == and, negated by the caller, != */
		r = v == t->num;
	}
	if (r) {
		snprintf(b, sizeof(b), "%llu", v);
		rules_note(c, b, strlen(b));
	}
	return r;
}

/* Adds the mailboxes of one address list, groups included. */
static void
rules_add_addrs(struct rules_ctx *c, InternetAddressList *l, int depth)
{
	int n = l ? internet_address_list_length(l) : 0;

	for (int i = 0; i < n && depth < 4; i++) {
		InternetAddress *a = internet_address_list_get_address(l, i);
		const char *name = internet_address_get_name(a);

		if (INTERNET_ADDRESS_IS_GROUP(a)) {
			rules_add_addrs(c,
					internet_address_group_get_members(
					    INTERNET_ADDRESS_GROUP(a)),
					depth + 1);
			continue;
		}
		if (name != NULL) {
			c->from_names =
			    xrealloc(c->from_names,
				     (c->nfrom_names + 1) * sizeof(char *));
			c->from_names[c->nfrom_names++] = xstrdup(name);
		}
		c->from_addrs = xrealloc(c->from_addrs,
					 (c->nfrom_addrs + 1) * sizeof(char *));
		c->from_addrs[c->nfrom_addrs++] =
		    xstrdup(internet_address_mailbox_get_addr(
			INTERNET_ADDRESS_MAILBOX(a)));
	}
}

/* The display names and addresses of every From header, decoded. */
static void
rules_from(struct rules_ctx *c)
{
	const struct msg *m = c->in->m;

	if (c->from_done)
		return;
	c->from_done = true;
	for (size_t i = 0; i < m->nhdrs; i++) {
		InternetAddressList *l;

		if (strcasecmp(m->hdrs[i].name, "From") != 0)
			continue;
		l = internet_address_list_parse(NULL, m->hdrs[i].value);
		rules_add_addrs(c, l, 0);
		if (l != NULL)
			g_object_unref(l);
	}
}

/* The unfolded value of header i with RFC 2047 encoded words decoded. */
static const char *
rules_decoded(struct rules_ctx *c, size_t i)
{
	const struct msg *m = c->in->m;

	if (c->dec == NULL)
		c->dec = xcalloc(m->nhdrs + 1, sizeof(char *));
	if (c->dec[i] == NULL) {
		char *d =
		    g_mime_utils_header_decode_text(NULL, m->hdrs[i].value);

		c->dec[i] = xstrdup(d ? d : m->hdrs[i].value);
		g_free(d);
	}
	return c->dec[i];
}

/* Any header of this name, decoded or raw. */
static bool
rules_test_headers(struct rules_ctx *c, const struct rules_test *t,
		   const char *name, bool raw)
{
	const struct msg *m = c->in->m;

	for (size_t i = 0; i < m->nhdrs; i++) {
		if (strcasecmp(m->hdrs[i].name, name) != 0)
			continue;
		if (rules_str_test_s(
			c, t, raw ? m->hdrs[i].raw : rules_decoded(c, i)))
			return true;
	}
	return false;
}

static bool
rules_test_list(struct rules_ctx *c, const struct rules_test *t, char *const *v,
		size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (rules_str_test_s(c, t, v[i]))
			return true;
	return false;
}

/* The macro as named, or with or without its braces. */
static const char *
rules_macro(const struct msg *m, const char *name)
{
	const char *v = msg_macro(m, name);
	size_t n = strlen(name);
	char *alt;

	if (v != NULL)
		return v;
	if (n > 2 && name[0] == '{' && name[n - 1] == '}')
		alt = xstrndup(name + 1, n - 2);
	else {
		alt = xmalloc(n + 3);
		snprintf(alt, n + 3, "{%s}", name);
	}
	v = msg_macro(m, alt);
	free(alt);
	return v;
}

static bool
rules_test_ip(struct rules_ctx *c, const struct rules_test *t)
{
	uint8_t a[16];
	const char *ip = c->in->m->client_addr;

	if (t->op != OP_IN)
		return rules_str_test_s(c, t, ip);
	if (util_addr_parse(ip, a) < 0)
		return false;
	for (size_t i = 0; i < t->ncidrs; i++)
		if (util_cidr_match(&t->cidrs[i], a)) {
			rules_note(c, ip, strlen(ip));
			return true;
		}
	return false;
}

static bool
rules_test_parts(struct rules_ctx *c, const struct rules_test *t)
{
	const struct mime_result *mr = c->in->mime;

	for (size_t i = 0; mr != NULL && i < mr->nparts; i++) {
		const struct mime_part *pt = &mr->parts[i];
		bool r;

		if (t->target == T_ATT_SIZE)
			r = rules_num_test(c, t, pt->size);
		else
			r = rules_str_test_s(
			    c, t,
			    t->target == T_ATT_NAME ? pt->name : pt->type);
		/* Every name some client may show is tested. */
		for (size_t k = 0;
		     !r && t->target == T_ATT_NAME && k < pt->nalt_names; k++)
			r = rules_str_test_s(c, t, pt->alt_names[k]);
		if (r)
			return true;
	}
	return false;
}

/* Whether any value of the target passes the test's positive sense. */
static bool
rules_test_any(struct rules_ctx *c, const struct rules_test *t)
{
	const struct rules_input *in = c->in;
	const struct msg *m = in->m;

	switch (t->target) {
	case T_CLIENT_IP:
		return rules_test_ip(c, t);
	case T_CLIENT_NAME:
		return rules_str_test_s(c, t, m->client_name);
	case T_HELO:
		return rules_str_test_s(c, t, m->helo);
	case T_ENV_FROM:
		return rules_str_test_s(c, t, m->from);
	case T_ENV_RCPT:
		if (c->stage == RULES_RCPT)
			return rules_str_test_s(c, t, in->rcpt);
		return rules_test_list(c, t, m->rcpts, m->nrcpts);
	case T_AUTH:
		return rules_str_test_s(c, t, m->auth);
	case T_MACRO:
		return rules_str_test_s(c, t, rules_macro(m, t->arg));
	case T_HEADER:
	case T_HEADER_RAW:
		return rules_test_headers(c, t, t->arg,
					  t->target == T_HEADER_RAW);
	case T_SUBJECT:
		return rules_test_headers(c, t, "Subject", false);
	case T_FROM_NAME:
		rules_from(c);
		return rules_test_list(c, t, c->from_names, c->nfrom_names);
	case T_FROM_ADDR:
		rules_from(c);
		return rules_test_list(c, t, c->from_addrs, c->nfrom_addrs);
	case T_BODY:
		return in->mime != NULL &&
		       rules_str_test(
			   c, t, in->mime->text.data ? in->mime->text.data : "",
			   in->mime->text.len);
	case T_BODY_RAW:
		return m->in_body && m->raw.len >= m->body_start &&
		       rules_str_test(c, t, m->raw.data + m->body_start,
				      m->raw.len - m->body_start);
	case T_ATT_NAME:
	case T_ATT_TYPE:
	case T_ATT_SIZE:
		return rules_test_parts(c, t);
	case T_SIZE:
		return rules_num_test(c, t, m->size);
	case T_VIRUS:
		/* Not scanned: no value, so no test on it holds. */
		if (in->virus_unknown)
			return false;
		if (in->virus == t->truth && in->virus)
			rules_note(
			    c, in->virus_name ? in->virus_name : "true",
			    strlen(in->virus_name ? in->virus_name : "true"));
		return in->virus == t->truth;
	case T_SPF:
		return rules_str_test_s(c, t, in->spf);
	case T_DKIM:
		return rules_str_test_s(c, t, in->dkim);
	case T_DMARC:
		return rules_str_test_s(c, t, in->dmarc);
	}
	return false;
}

/*
 * A condition. A false node leaves the matched text as it found it, so the
 * text kept is that of a test that made the rule true. Terms are tried in
 * order, and only until the first that decides an and or an or; recurses
 * as deep as not and parentheses nest (see struct rules_node).
 */
static bool
rules_cond(struct rules_ctx *c, const struct rules_node *n)
{
	bool had = c->have_matched, r;

	switch (n->kind) {
	case N_OR:
		for (size_t i = 0; i < n->nkids; i++)
			if (rules_cond(c, n->kids[i]))
				return true;
		return false;
	case N_AND:
		r = true;
		for (size_t i = 0; i < n->nkids && r; i++)
			r = rules_cond(c, n->kids[i]);
		break;
	case N_NOT:
		r = !rules_cond(c, n->kids[0]);
		c->have_matched = had;
		return r;
	default:
		if (n->test.op == OP_NMATCH || n->test.op == OP_NE) {
			r = !rules_test_any(c, &n->test);
			c->have_matched = had;
			return r;
		}
		r = rules_test_any(c, &n->test);
	}
	if (!r)
		c->have_matched = had;
	return r;
}

/* Adds a matching rule's actions to the outcome. */
static void
rules_apply(struct rules_ctx *c, const struct rules_rule *r)
{
	struct rules_outcome *o = c->out;
	struct rules_hit *h;

	o->hits = xrealloc(o->hits, (o->nhits + 1) * sizeof(*h));
	h = &o->hits[o->nhits++];
	h->name = r->name;
	h->score = r->score;
	snprintf(h->matched, sizeof(h->matched), "%s",
		 c->have_matched ? c->matched : "");
	o->score += r->score;

	for (size_t i = 0; i < r->nacts; i++) {
		const struct rules_action *a = &r->acts[i];
		struct hdrop *op;

		switch (a->kind) {
		case A_SCORE:
			break;
		case A_HEADER:
			o->headers = xrealloc(o->headers,
					      (o->nheaders + 1) * sizeof(*op));
			op = &o->headers[o->nheaders++];
			memset(op, 0, sizeof(*op));
			op->kind = HDROP_ADD;
			op->name = xstrdup(a->hname);
			op->value = xmalloc(strlen(a->text) + 1);
			util_safe(op->value, strlen(a->text) + 1, a->text,
				  false);
			break;
		case A_TAG:
			if (o->subject_tag == NULL)
				o->subject_tag = xstrdup(a->text);
			break;
		default:
			o->decided = true;
			o->rule = r->name;
			o->action = a->kind == A_ACCEPT	    ? ACT_ACCEPT
				    : a->kind == A_REJECT   ? ACT_REJECT
				    : a->kind == A_TEMPFAIL ? ACT_TEMPFAIL
				    : a->kind == A_DISCARD  ? ACT_DISCARD
							    : ACT_QUARANTINE;
			snprintf(o->rcode, sizeof(o->rcode), "%s", a->rcode);
			snprintf(o->xcode, sizeof(o->xcode), "%s", a->xcode);
			util_safe(o->text, sizeof(o->text),
				  a->text ? a->text : "", false);
		}
	}
}

static void
rules_ctx_free(struct rules_ctx *c)
{
	if (c->dec != NULL)
		for (size_t i = 0; i < c->in->m->nhdrs; i++)
			free(c->dec[i]);
	free(c->dec);
	for (size_t i = 0; i < c->nfrom_names; i++)
		free(c->from_names[i]);
	for (size_t i = 0; i < c->nfrom_addrs; i++)
		free(c->from_addrs[i]);
	free(c->from_names);
	free(c->from_addrs);
}

/*
 * Whether the rule is evaluated at this stage: its own stage, or an earlier
 * one not evaluated yet for this outcome (the MTA skipped it, or this is a
 * fresh outcome for another message on the connection). RCPT rules run at
 * every RCPT and again at EOM.
 */
static bool
rules_at(const struct rules_rule *r, enum rules_stage stage, int done)
{
	if (r->stage == RULES_RCPT && stage >= RULES_RCPT)
		return true;
	return (int)r->stage >= done && r->stage <= stage;
}

void
rules_eval(const struct rules *r, enum rules_stage stage,
	   const struct rules_input *in, struct rules_outcome *out,
	   const char *qid)
{
	struct rules_ctx c = {0};

	if (r == NULL || out->decided || in == NULL || in->m == NULL)
		return;
	pthread_once(&rules_once, rules_once_init);
	c.in = in;
	c.stage = stage;
	c.out = out;
	c.qid = qid;
	for (size_t i = 0; i < r->nrules && !out->decided; i++) {
		const struct rules_rule *rule = &r->rules[i];

		if (!rules_at(rule, stage, out->stages_done))
			continue;

		/*
		 * At RCPT only a decisive RCPT rule counts; the others count
		 * once, when evaluated again over all recipients at EOM.
		 */
		if (stage == RULES_RCPT && rule->stage == RULES_RCPT &&
		    !rule->decisive)
			continue;
		c.rule = rule;
		c.warned = false;
		c.have_matched = false;
		if (rules_cond(&c, rule->cond))
			rules_apply(&c, rule);
	}
	rules_ctx_free(&c);

	/* RCPT repeats for each recipient: only the stages before it end. */
	if (out->stages_done < (int)stage + (stage == RULES_RCPT ? 0 : 1))
		out->stages_done = (int)stage + (stage == RULES_RCPT ? 0 : 1);
}

void
rules_outcome_free(struct rules_outcome *o)
{
	if (o == NULL)
		return;
	free(o->hits);
	for (size_t i = 0; i < o->nheaders; i++) {
		free(o->headers[i].name);
		free(o->headers[i].value);
	}
	free(o->headers);
	free(o->subject_tag);
	memset(o, 0, sizeof(*o));
}
