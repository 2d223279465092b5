/*
 * conf.c: edmilter.conf. One "Key Value" per line, '#' starts a comment,
 * keys are case-insensitive. Every key is a row of conf_keys: its name, its
 * type, its default and its bounds; the parser knows nothing else. Errors
 * name the file and the line; loading goes on to report them all.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"

enum conf_type {
	CT_STRING,
	CT_BOOL,
	CT_INT,	 /* long, min..max */
	CT_SIZE, /* long long bytes, K/M/G suffixes */
	CT_MODE, /* octal file mode */
	CT_ACTION,
	CT_FACILITY,
	CT_SOCKET,
	CT_CIDRS,
	CT_DOUBLE,   /* a decimal number, min..max */
	CT_FALLBACK, /* accept, quarantine, tempfail or reject */
	CT_PATH,     /* a file or folder; relative: from the config's folder */
};

struct conf_key {
	const char *name;
	enum conf_type type;
	size_t off;
	const char *def;
	long long min, max;
};

#define O(f) offsetof(struct conf, f)
#define GiB (1024LL * 1024 * 1024)

static const struct conf_key conf_keys[] = {
    {"Socket", CT_SOCKET, O(socket), "inet:8894@127.0.0.1", 0, 0},
    {"SocketMode", CT_MODE, O(socket_mode), "0660", 0, 0777},
    {"SocketGroup", CT_STRING, O(socket_group), "", 0, 0},
    {"UserID", CT_STRING, O(user), "", 0, 0},
    {"AllowRoot", CT_BOOL, O(allow_root), "no", 0, 0},
    {"PidFile", CT_PATH, O(pidfile), "", 0, 0},
    {"MilterTimeout", CT_INT, O(milter_timeout), "600", 10, 86400},
    {"Syslog", CT_BOOL, O(syslog), "yes", 0, 0},
    {"SyslogFacility", CT_FACILITY, O(syslog_facility), "mail", 0, 0},
    {"LogDebug", CT_BOOL, O(log_debug), "no", 0, 0},
    {"AuthservID", CT_STRING, O(authserv_id), "", 0, 0},
    {"ClamAVDatabase", CT_PATH, O(clamav_db), "/var/lib/clamav", 0, 0},
    {"ClamAVMaxScanSize", CT_SIZE, O(clamav_max_scansize), "400M", 1024,
     4 * GiB - 1},
    {"ClamAVMaxFileSize", CT_SIZE, O(clamav_max_filesize), "100M", 1024,
     4 * GiB - 1},
    {"ClamAVMaxRecursion", CT_INT, O(clamav_max_recursion), "17", 1, 100},
    {"ClamAVMaxFiles", CT_INT, O(clamav_max_files), "10000", 1, 1000000},
    {"ClamAVMaxScanTime", CT_INT, O(clamav_max_scantime), "120000", 100,
     3600000},
    {"TemporaryDirectory", CT_PATH, O(tmpdir), "/tmp", 0, 0},
    {"OnInfected", CT_ACTION, O(on_infected), "reject", 0, 0},
    {"ClamAVCheckInterval", CT_INT, O(clamav_check_interval), "600", 0, 86400},
    {"OnNoEngine", CT_FALLBACK, O(on_no_engine), "tempfail", 0, 0},
    {"OnScanError", CT_FALLBACK, O(on_scan_error), "tempfail", 0, 0},
    {"OnScanTimeout", CT_FALLBACK, O(on_scan_timeout), "tempfail", 0, 0},
    {"OnScanLimit", CT_FALLBACK, O(on_scan_limit), "reject", 0, 0},
    {"OnOversize", CT_FALLBACK, O(on_oversize), "reject", 0, 0},
    {"OnInternalError", CT_FALLBACK, O(on_internal_error), "tempfail", 0, 0},
    {"RejectMessage", CT_STRING, O(reject_message),
     "message refused: virus found: %v", 0, 0},
    {"TagSubject", CT_STRING, O(tag_subject), "[VIRUS]", 0, 0},
    {"AddHeaders", CT_BOOL, O(add_headers), "yes", 0, 0},
    {"MaxMessageSize", CT_SIZE, O(max_message_size), "50M", 1024, 4 * GiB - 1},
    {"AuthChecks", CT_BOOL, O(auth_checks), "yes", 0, 0},
    {"Nameservers", CT_STRING, O(nameservers), "", 0, 0},
    {"DNSTimeout", CT_INT, O(dns_timeout), "5000", 100, 60000},
    {"AddReceivedSPF", CT_BOOL, O(add_received_spf), "no", 0, 0},
    {"MinimumKeyBits", CT_INT, O(min_key_bits), "1024", 512, 16384},
    {"MaximumSignatures", CT_INT, O(max_signatures), "5", 1, 16},
    {"PublicSuffixList", CT_PATH, O(public_suffix_list),
     "/usr/share/publicsuffix/effective_tld_names.dat", 0, 0},
    {"OnDMARCReject", CT_ACTION, O(on_dmarc_reject), "reject", 0, 0},
    {"OnDMARCQuarantine", CT_ACTION, O(on_dmarc_quarantine), "quarantine", 0,
     0},
    {"OnAuthTempError", CT_FALLBACK, O(on_auth_temp_error), "tempfail", 0, 0},
    {"OnAuthPermError", CT_FALLBACK, O(on_auth_perm_error), "accept", 0, 0},
    {"RulesPath", CT_PATH, O(rules_path), "", 0, 0},
    {"ScoreTag", CT_DOUBLE, O(score_tag), "5", -1000, 1000000},
    {"ScoreQuarantine", CT_DOUBLE, O(score_quarantine), "10", -1000, 1000000},
    {"ScoreReject", CT_DOUBLE, O(score_reject), "15", -1000, 1000000},
    {"SpamTagSubject", CT_STRING, O(spam_tag_subject), "[SPAM]", 0, 0},
    {"MIMEMaxDepth", CT_INT, O(mime_max_depth), "30", 1, 1000},
    {"MIMEMaxParts", CT_INT, O(mime_max_parts), "1000", 1, 100000},
    {"MIMEMaxDecodedSize", CT_SIZE, O(mime_max_decoded), "50M", 1024,
     4 * GiB - 1},
    {"OnMIMELimit", CT_FALLBACK, O(on_mime_limit), "accept", 0, 0},
    {"MaxHeaders", CT_INT, O(max_headers), "1000", 10, 1000000},
    /* libmilter drops a packet over 64K: one header is at most that. */
    {"MaxHeaderSize", CT_SIZE, O(max_header_size), "60K", 1024, 65000},
    {"OnHeaderLimit", CT_FALLBACK, O(on_header_limit), "reject", 0, 0},
    {"MaxRecipients", CT_INT, O(max_recipients), "1000", 1, 1000000},
    {"OnRecipientLimit", CT_FALLBACK, O(on_recipient_limit), "tempfail", 0, 0},
    {"InternalHosts", CT_CIDRS, O(internal), "127.0.0.0/8 ::1", 0, 0},
};

#define NKEYS (sizeof(conf_keys) / sizeof(*conf_keys))
_Static_assert(NKEYS <= CONF_MAX_KEYS, "raise CONF_MAX_KEYS");

/* Parses a number with an optional K, M or G suffix. */
static int
conf_parse_size(const char *s, long long *out)
{
	char *end;
	long long v, mult = 1;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || errno != 0 || v < 0)
		return -1;
	switch (toupper((unsigned char)*end)) {
	case '\0':
		break;
	case 'K':
		mult = 1024, end++;
		break;
	case 'M':
		mult = 1024 * 1024, end++;
		break;
	case 'G':
		mult = GiB, end++;
		break;
	default:
		return -1;
	}
	if (*end != '\0' || v > LLONG_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

static int
conf_parse_cidrs(struct conf *c, const char *val, char *err, size_t errlen)
{
	char *copy = xstrdup(val), *tok, *save = NULL;
	int rc = 0;

	free(c->internal);
	c->internal = NULL;
	c->ninternal = 0;
	for (tok = strtok_r(copy, " ,\t", &save); tok != NULL;
	     tok = strtok_r(NULL, " ,\t", &save)) {
		struct cidr r;

		if (util_cidr_parse(tok, &r) < 0) {
			snprintf(err, errlen, "bad address range \"%s\"", tok);
			rc = -1;
			break;
		}
		c->internal =
		    xrealloc(c->internal, (c->ninternal + 1) * sizeof(r));
		c->internal[c->ninternal++] = r;
	}
	free(copy);
	return rc;
}

/*
 * val as an absolute path. A relative one is taken from the folder of the
 * config file (c->path; a relative c->path from the current folder), so
 * that it names the same file for -n, edmilter-scan and the daemon, in
 * the foreground or not (a daemon runs in /), at start and at reload.
 */
static char *
conf_abspath(const struct conf *c, const char *val, char *err, size_t errlen)
{
	char cwd[PATH_MAX], buf[PATH_MAX];
	const char *slash;
	int dirlen, n;

	if (val[0] == '/' || val[0] == '\0')
		return xstrdup(val);
	cwd[0] = '\0';
	if (c->path[0] != '/') {
		if (getcwd(cwd, sizeof(cwd)) == NULL) {
			snprintf(err, errlen,
				 "a relative path, and the current folder is "
				 "unknown: %s",
				 strerror(errno));
			return NULL;
		}
		if (strcmp(cwd, "/") == 0)
			cwd[0] = '\0';
	}
	slash = strrchr(c->path, '/');
	dirlen = slash != NULL ? (int)(slash - c->path) : 0;
	n = snprintf(buf, sizeof(buf), "%s%s%.*s/%s", cwd,
		     c->path[0] != '/' && dirlen > 0 ? "/" : "", dirlen,
		     c->path, val);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		snprintf(err, errlen, "the path is too long");
		return NULL;
	}
	return xstrdup(buf);
}

/*
 * s for an error message: a byte that is not printable ASCII (a control
 * byte, an 8-bit one) as \xNN.
 */
static const char *
conf_shown(const char *s, char *out, size_t len)
{
	size_t n = 0;

	for (; *s != '\0' && n + 5 < len; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch >= 0x20 && ch < 0x7f)
			out[n++] = (char)ch;
		else
			n += (size_t)snprintf(out + n, len - n, "\\x%02x", ch);
	}
	out[n] = '\0';
	return out;
}

/* Stores val for key k in c; on error writes why into err. */
static int
conf_set(struct conf *c, const struct conf_key *k, const char *val, char *err,
	 size_t errlen)
{
	void *p = (char *)c + k->off;
	long long n;
	char *end;

	switch (k->type) {
	case CT_STRING:
		free(*(char **)p);
		*(char **)p = xstrdup(val);
		return 0;
	case CT_PATH: {
		char *abs = conf_abspath(c, val, err, errlen);

		if (abs == NULL)
			return -1;
		free(*(char **)p);
		*(char **)p = abs;
		return 0;
	}
	case CT_SOCKET:
		if (strncmp(val, "unix:", 5) != 0 &&
		    strncmp(val, "local:", 6) != 0 &&
		    strncmp(val, "inet:", 5) != 0 &&
		    strncmp(val, "inet6:", 6) != 0) {
			snprintf(err, errlen,
				 "expected unix:/path, inet:port@host or "
				 "inet6:port@host");
			return -1;
		}
		free(*(char **)p);
		*(char **)p = xstrdup(val);
		return 0;
	case CT_BOOL:
		if (strcasecmp(val, "yes") == 0 ||
		    strcasecmp(val, "true") == 0 || strcmp(val, "1") == 0)
			*(bool *)p = true;
		else if (strcasecmp(val, "no") == 0 ||
			 strcasecmp(val, "false") == 0 || strcmp(val, "0") == 0)
			*(bool *)p = false;
		else {
			snprintf(err, errlen, "expected yes or no");
			return -1;
		}
		return 0;
	case CT_INT:
	case CT_MODE:
		errno = 0;
		n = strtoll(val, &end, k->type == CT_MODE ? 8 : 10);
		if (end == val || *end != '\0' || errno != 0 || n < k->min ||
		    n > k->max) {
			if (k->type == CT_MODE)
				snprintf(err, errlen,
					 "expected an octal mode from 0 to "
					 "0%llo",
					 k->max);
			else
				snprintf(err, errlen,
					 "expected a number from %lld to %lld",
					 k->min, k->max);
			return -1;
		}
		*(long *)p = (long)n;
		return 0;
	case CT_SIZE:
		if (conf_parse_size(val, &n) < 0 || n < k->min || n > k->max) {
			snprintf(err, errlen,
				 "expected a size (K, M, G) from %lld to %lld "
				 "bytes",
				 k->min, k->max);
			return -1;
		}
		*(long long *)p = n;
		return 0;
	case CT_ACTION:
		if (verdict_action_parse(val, (enum action *)p) < 0) {
			snprintf(err, errlen,
				 "expected accept, tag, quarantine, discard, "
				 "reject or tempfail");
			return -1;
		}
		return 0;
	case CT_FALLBACK:
		if (verdict_action_parse(val, (enum action *)p) < 0 ||
		    *(enum action *)p == ACT_TAG ||
		    *(enum action *)p == ACT_DISCARD) {
			snprintf(err, errlen,
				 "expected accept, quarantine, tempfail or "
				 "reject");
			return -1;
		}
		return 0;
	case CT_FACILITY:
		if ((*(int *)p = log_facility_parse(val)) < 0) {
			snprintf(err, errlen,
				 "expected a syslog facility (mail, daemon, "
				 "local0..local7)");
			return -1;
		}
		return 0;
	case CT_CIDRS:
		return conf_parse_cidrs(c, val, err, errlen);
	case CT_DOUBLE: {
		double d;

		errno = 0;
		d = strtod(val, &end);
		/* Written so that NaN ("nan") is out of range too. */
		if (end == val || *end != '\0' || errno != 0 ||
		    !(d >= (double)k->min && d <= (double)k->max)) {
			snprintf(err, errlen,
				 "expected a decimal number from %lld to %lld",
				 k->min, k->max);
			return -1;
		}
		*(double *)p = d;
		return 0;
	}
	}
	return -1;
}

static const struct conf_key *
conf_find(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcasecmp(name, conf_keys[i].name) == 0)
			return &conf_keys[i];
	return NULL;
}

struct conf *
conf_defaults(void)
{
	struct conf *c = xcalloc(1, sizeof(*c));
	char err[256], host[256];

	for (size_t i = 0; i < NKEYS; i++)
		if (conf_set(c, &conf_keys[i], conf_keys[i].def, err,
			     sizeof(err)) < 0)
			abort(); /* a bad default is a bug */
	c->path = xstrdup("(defaults)");
	if (gethostname(host, sizeof(host)) < 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	free(c->authserv_id);
	c->authserv_id = xstrdup(host);
	c->hostname = xstrdup(host);
	return c;
}

/* Splits one line into key and value; both NULL for a blank line. */
static void
conf_split(char *line, char **key, char **val)
{
	char *p, *e;

	*key = *val = NULL;
	if ((p = strchr(line, '#')) != NULL)
		*p = '\0';
	e = line + strlen(line);
	while (e > line && isspace((unsigned char)e[-1]))
		*--e = '\0';
	p = line;
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0')
		return;
	*key = p;
	while (*p && !isspace((unsigned char)*p))
		p++;
	if (*p) {
		*p++ = '\0';
		while (isspace((unsigned char)*p))
			p++;
	}
	*val = p;
}

bool
conf_any_set(const struct conf *c)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (c->lines[i] != 0)
			return true;
	return false;
}

void
conf_where(const struct conf *c, const char *key, char *out, size_t len)
{
	const struct conf_key *k = conf_find(key);
	unsigned line = k ? c->lines[k - conf_keys] : 0;

	if (line)
		snprintf(out, len, "%s:%u", c->path, line);
	else
		snprintf(out, len, "%s", c->path);
}

/* Is s "host" or "host@port" with a numeric address and a port? */
static bool
conf_addr_port(const char *s)
{
	char host[64], *at, *end;
	uint8_t a[16];
	long port;

	if (strlen(s) >= sizeof(host))
		return false;
	strcpy(host, s);
	if ((at = strchr(host, '@')) != NULL) {
		*at++ = '\0';
		port = strtol(at, &end, 10);
		if (*at == '\0' || *end != '\0' || port < 1 || port > 65535)
			return false;
	}
	return util_addr_parse(host, a) == 0;
}

#define CONF_AUTHSERV_CHARS                                                    \
	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_"

/* The socket's port and path, the forwarders and the authserv-id. */
static void
conf_validate(const struct conf *c, struct errlist *errs)
{
	char where[300], shown[1024], *copy, *tok, *save = NULL, *end;
	const char *s = c->socket;
	long port;

	conf_where(c, "Socket", where, sizeof(where));
	if (strncmp(s, "inet:", 5) == 0 || strncmp(s, "inet6:", 6) == 0) {
		port = strtol(strchr(s, ':') + 1, &end, 10);
		if (port < 1 || port > 65535 || (*end != '@' && *end != '\0'))
			errlist_add(errs, "%s: Socket: bad port in \"%s\"",
				    where, s);
	} else if (strchr(s, ':')[1] != '/') {
		errlist_add(errs,
			    "%s: Socket: a unix socket needs an absolute "
			    "path: \"%s\"",
			    where, s);
	}
	conf_where(c, "Nameservers", where, sizeof(where));
	copy = xstrdup(c->nameservers);
	for (tok = strtok_r(copy, " ,\t", &save); tok != NULL;
	     tok = strtok_r(NULL, " ,\t", &save))
		if (!conf_addr_port(tok))
			errlist_add(errs,
				    "%s: Nameservers: \"%s\" is not an "
				    "address with an optional @port",
				    where, tok);
	free(copy);
	/*
	 * libclamav makes its folders and files a few levels below it, one
	 * more for each container it opens, and a path it cannot make there
	 * it answers clean: TemporaryDirectory is kept short enough for
	 * every level to fit.
	 */
	conf_where(c, "TemporaryDirectory", where, sizeof(where));
	if (strlen(c->tmpdir) > CONF_MAX_TMPDIR)
		errlist_add(errs,
			    "%s: TemporaryDirectory: longer than %d bytes "
			    "(libclamav's files below it must fit in a path)",
			    where, CONF_MAX_TMPDIR);
	/*
	 * Written into Authentication-Results and matched against incoming
	 * ones byte for byte: a host-name-like RFC 8601 authserv-id, nothing
	 * that a header could carry otherwise or that a reader could skip.
	 */
	conf_where(c, "AuthservID", where, sizeof(where));
	if (c->authserv_id[0] == '\0' ||
	    c->authserv_id[strspn(c->authserv_id, CONF_AUTHSERV_CHARS)] != '\0')
		errlist_add(errs,
			    "%s: AuthservID: \"%s\" is not a host-name-like "
			    "token (letters, digits, '.', '-' and '_' only)",
			    where,
			    conf_shown(c->authserv_id, shown, sizeof(shown)));
}

int
conf_load(const char *path, struct conf **out, struct errlist *errs)
{
	struct conf *c;
	FILE *fp;
	char *line = NULL, *key, *val, err[256], shown[1024];
	size_t cap = 0, before = errs->n;
	unsigned lineno = 0;
	ssize_t len;

	*out = NULL;
	if ((fp = fopen(path, "r")) == NULL) {
		errlist_add(errs, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	c = conf_defaults();
	free(c->path);
	c->path = xstrdup(path);
	while ((len = getline(&line, &cap, fp)) != -1) {
		const struct conf_key *k;

		lineno++;
		/* The C string would end there, the rest of the value lost. */
		if (memchr(line, '\0', (size_t)len) != NULL) {
			errlist_add(errs, "%s:%u: a NUL byte in the line", path,
				    lineno);
			continue;
		}
		conf_split(line, &key, &val);
		if (key == NULL)
			continue;
		if ((k = conf_find(key)) == NULL) {
			errlist_add(errs, "%s:%u: unknown key \"%s\"", path,
				    lineno,
				    conf_shown(key, shown, sizeof(shown)));
			continue;
		}
		if (*val == '\0') {
			errlist_add(errs, "%s:%u: %s: missing value", path,
				    lineno, k->name);
			continue;
		}
		if (c->lines[k - conf_keys] != 0)
			errlist_add(errs,
				    "%s:%u: %s: given twice (first on line "
				    "%u)",
				    path, lineno, k->name,
				    c->lines[k - conf_keys]);
		else if (conf_set(c, k, val, err, sizeof(err)) < 0)
			errlist_add(errs, "%s:%u: %s: bad value \"%s\": %s",
				    path, lineno, k->name,
				    conf_shown(val, shown, sizeof(shown)), err);
		if (c->lines[k - conf_keys] == 0)
			c->lines[k - conf_keys] = lineno;
	}
	if (ferror(fp))
		errlist_add(errs, "%s: read error: %s", path, strerror(errno));
	free(line);
	fclose(fp);
	conf_validate(c, errs);
	if (errs->n > before) {
		conf_free(c);
		return -1;
	}
	*out = c;
	return 0;
}

void
conf_free(struct conf *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < NKEYS; i++)
		if (conf_keys[i].type == CT_STRING ||
		    conf_keys[i].type == CT_SOCKET ||
		    conf_keys[i].type == CT_PATH)
			free(*(char **)((char *)c + conf_keys[i].off));
	free(c->internal);
	free(c->hostname);
	free(c->path);
	free(c);
}

bool
conf_is_internal(const struct conf *c, const char *addr)
{
	uint8_t a[16];

	if (addr == NULL || util_addr_parse(addr, a) < 0)
		return false;
	for (size_t i = 0; i < c->ninternal; i++)
		if (util_cidr_match(&c->internal[i], a))
			return true;
	return false;
}

void
conf_dump_defaults(void)
{
	for (size_t i = 0; i < NKEYS; i++)
		printf("%-20s %s\n", conf_keys[i].name, conf_keys[i].def);
}
