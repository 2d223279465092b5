/*
 * unit_conf.c: the config parser, on files written by the test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "tap.h"

static char tmpl[] = "/tmp/edm-unit-conf.XXXXXX";

/* Writes len bytes of text to a fresh file and returns its path. */
static const char *
write_file(const char *text, size_t len)
{
	static char path[64];
	FILE *fp;

	snprintf(path, sizeof(path), "%s", tmpl);
	int fd = mkstemp(path);
	fp = fdopen(fd, "w");
	fwrite(text, 1, len, fp);
	fclose(fp);
	return path;
}

/* Loads len bytes of text; returns 0/-1 and the errors joined by '|'. */
static int
load_n(const char *text, size_t n, struct conf **c, char *errs, size_t len)
{
	struct errlist e = {0};
	const char *path = write_file(text, n);
	int rc = conf_load(path, c, &e);

	errs[0] = '\0';
	for (size_t i = 0; i < e.n; i++) {
		const char *l = strstr(e.lines[i], ":") ? e.lines[i] : "";

		/* Drop the random path, keep ":line: message". */
		if (strncmp(l, path, strlen(path)) == 0)
			l += strlen(path);
		snprintf(errs + strlen(errs), len - strlen(errs), "%s%s",
			 i ? "|" : "", l);
	}
	errlist_free(&e);
	unlink(path);
	return rc;
}

static int
load(const char *text, struct conf **c, char *errs, size_t len)
{
	return load_n(text, strlen(text), c, errs, len);
}

int
main(void)
{
	struct conf *c;
	char errs[2048];
	uint8_t a[16];
	struct cidr r;
	static const char nul_line[] = "Syslog no\nOnInfected accept\0reject\n";
	static const char ctl_err[] = ":2: AuthservID: \"mx\\x01.test\" is not";

	/* Defaults. */
	c = conf_defaults();
	is_str(c->clamav_db, "/var/lib/clamav", "default ClamAVDatabase");
	ok(c->on_infected == ACT_REJECT, "default OnInfected is reject");
	ok(c->on_scan_error == ACT_TEMPFAIL, "default OnScanError tempfail");
	ok(c->clamav_max_scansize == 400LL * 1024 * 1024,
	   "default ClamAVMaxScanSize 400M");
	ok(c->authserv_id != NULL && c->authserv_id[0] != '\0',
	   "default AuthservID is the host name");
	ok(conf_is_internal(c, "127.0.0.1"), "127.0.0.1 internal by default");
	ok(!conf_is_internal(c, "192.0.2.1"), "192.0.2.1 not internal");
	conf_free(c);

	/* A good file: comments, blank lines, case, suffixes, spaces. */
	ok(load("# comment\n\n  socket   unix:/run/edm.sock  \n"
		"OnInfected quarantine # trailing\n"
		"ClamAVMaxFileSize 10M\nMaxMessageSize 2G\n"
		"SocketMode 0600\nSyslog no\n"
		"InternalHosts 10.0.0.0/8, 2001:db8::/32 192.0.2.5\n"
		"RejectMessage virus %v found\n",
		&c, errs, sizeof(errs)) == 0,
	   "good file loads (%s)", errs);
	if (c != NULL) {
		is_str(c->socket, "unix:/run/edm.sock", "Socket value");
		ok(c->on_infected == ACT_QUARANTINE, "OnInfected quarantine");
		ok(c->clamav_max_filesize == 10LL * 1024 * 1024, "10M size");
		ok(c->max_message_size == 2LL * 1024 * 1024 * 1024, "2G");
		ok(c->socket_mode == 0600, "SocketMode octal");
		ok(!c->syslog, "Syslog no");
		is_str(c->reject_message, "virus %v found",
		       "value keeps its inner spaces");
		ok(c->ninternal == 3, "three internal ranges");
		ok(conf_is_internal(c, "10.1.2.3"), "10.1.2.3 internal");
		ok(conf_is_internal(c, "::ffff:10.1.2.3"),
		   "IPv4-mapped 10.1.2.3 internal");
		ok(conf_is_internal(c, "2001:db8:1::1"), "2001:db8:1::1");
		ok(conf_is_internal(c, "192.0.2.5"), "single address");
		ok(!conf_is_internal(c, "192.0.2.6"), "next address is not");
		ok(!conf_is_internal(c, "127.0.0.1"),
		   "InternalHosts replaces the default");
		conf_free(c);
	}

	/* Every error, with its line, in one pass. */
	ok(load("Socket inet:1@127.0.0.1\nNoSuchKey 1\nOnInfected maybe\n"
		"ClamAVMaxRecursion 1000\nSocket inet:2@127.0.0.1\n"
		"ClamAVMaxFileSize 12Q\nSyslog perhaps\nUserID\n"
		"InternalHosts 10.0.0.0/33\nSocket tcp:25\n",
		&c, errs, sizeof(errs)) == -1 &&
	       c == NULL,
	   "bad file fails");
	is_str(errs,
	       ":2: unknown key \"NoSuchKey\"|"
	       ":3: OnInfected: bad value \"maybe\": expected accept, tag, "
	       "quarantine, discard, reject or tempfail|"
	       ":4: ClamAVMaxRecursion: bad value \"1000\": expected a number "
	       "from 1 to 100|"
	       ":5: Socket: given twice (first on line 1)|"
	       ":6: ClamAVMaxFileSize: bad value \"12Q\": expected a size (K, "
	       "M, G) from 1024 to 4294967295 bytes|"
	       ":7: Syslog: bad value \"perhaps\": expected yes or no|"
	       ":8: UserID: missing value|"
	       ":9: InternalHosts: bad value \"10.0.0.0/33\": bad address "
	       "range \"10.0.0.0/33\"|"
	       ":10: Socket: given twice (first on line 1)",
	       "each error names its line");

	ok(load("Socket tcp:25\n", &c, errs, sizeof(errs)) == -1,
	   "bad socket fails");
	ok(strstr(errs, ":1: Socket: bad value \"tcp:25\"") != NULL,
	   "bad socket error (%s)", errs);

	/* Values that parse but cannot work. */
	ok(load("Socket inet:99999@127.0.0.1\nNameservers 192.0.2.1@53, x\n"
		"AuthservID mx;x\n",
		&c, errs, sizeof(errs)) == -1,
	   "unusable values fail");
	is_str(errs,
	       ":1: Socket: bad port in \"inet:99999@127.0.0.1\"|"
	       ":2: Nameservers: \"x\" is not an address with an optional "
	       "@port|"
	       ":3: AuthservID: \"mx;x\" is not a host-name-like token "
	       "(letters, digits, '.', '-' and '_' only)",
	       "each names its line");
	ok(load("Socket unix:run/e.sock\n", &c, errs, sizeof(errs)) == -1 &&
	       strstr(errs, ":1: Socket: a unix socket needs an absolute "
			    "path") != NULL,
	   "a relative unix socket path fails (%s)", errs);
	ok(load("Nameservers 127.0.0.1@5353 ::1\nSocket inet6:25@::1\n", &c,
		errs, sizeof(errs)) == 0,
	   "forwarders with and without a port, inet6 socket (%s)", errs);
	conf_free(c);
	ok(load("Syslog no\n\nSyslog yes\n", &c, errs, sizeof(errs)) == -1 &&
	       strcmp(errs, ":3: Syslog: given twice (first on line 1)") == 0,
	   "a duplicate names the first line (%s)", errs);

	/* A NUL byte would cut the value short: the line is refused. */
	ok(load_n(nul_line, sizeof(nul_line) - 1, &c, errs, sizeof(errs)) ==
		   -1 &&
	       strcmp(errs, ":2: a NUL byte in the line") == 0,
	   "a NUL byte in a line is an error naming it (%s)", errs);

	/* AuthservID: a host-name-like token, other bytes shown escaped. */
	ok(load("AuthservID mx-1.Example_2.test\n", &c, errs, sizeof(errs)) ==
	       0,
	   "AuthservID of letters, digits, '.', '-', '_' (%s)", errs);
	conf_free(c);
	ok(load("Syslog no\nAuthservID mx\001.test\n", &c, errs,
		sizeof(errs)) == -1 &&
	       strncmp(errs, ctl_err, strlen(ctl_err)) == 0,
	   "AuthservID with a control byte fails, shown as \\x01 (%s)", errs);
	ok(load("AuthservID mx\351.test\n", &c, errs, sizeof(errs)) == -1 &&
	       strstr(errs, "\"mx\\xe9.test\"") != NULL,
	   "AuthservID with an 8-bit byte fails (%s)", errs);
	ok(load("OnInfected acc\033ept\n", &c, errs, sizeof(errs)) == -1 &&
	       strstr(errs, "bad value \"acc\\x1bept\"") != NULL,
	   "a bad value is shown with its control bytes escaped (%s)", errs);

	/* Relative paths: from the config's folder, whatever the cwd. */
	ok(load("RulesPath r/local.rules\nTemporaryDirectory tmp\n"
		"PidFile /run/e.pid\nClamAVDatabase ../db\n",
		&c, errs, sizeof(errs)) == 0,
	   "relative paths load (%s)", errs);
	if (c != NULL) {
		is_str(c->rules_path, "/tmp/r/local.rules",
		       "RulesPath from the config's folder");
		is_str(c->tmpdir, "/tmp/tmp",
		       "TemporaryDirectory from the config's folder");
		is_str(c->clamav_db, "/tmp/../db", "ClamAVDatabase too");
		is_str(c->pidfile, "/run/e.pid", "an absolute path is kept");
		conf_free(c);
	}
	{
		struct errlist e = {0};
		const char *path = write_file("RulesPath r.rules\n", 18);
		char cwd[4096];

		c = NULL;
		ok(getcwd(cwd, sizeof(cwd)) != NULL && chdir("/tmp") == 0 &&
		       conf_load(path + 5, &c, &e) == 0 && chdir(cwd) == 0 &&
		       strcmp(c->rules_path, "/tmp/r.rules") == 0,
		   "a relative config: its folder from the current one (%s)",
		   c != NULL ? c->rules_path : "");
		conf_free(c);
		errlist_free(&e);
		unlink(path);
	}

	{
		struct errlist e = {0};

		ok(conf_load("/nonexistent/edm.conf", &c, &e) == -1 &&
		       e.n == 1 &&
		       strstr(e.lines[0], "/nonexistent/edm.conf: cannot "
					  "open") != NULL,
		   "missing file is an error naming it");
		errlist_free(&e);
	}

	/* Address ranges. */
	ok(util_cidr_parse("192.0.2.0/24", &r) == 0 && r.bits == 120,
	   "IPv4 /24 is /120 mapped");
	ok(util_addr_parse("192.0.2.200", a) == 0 && util_cidr_match(&r, a),
	   "192.0.2.200 in 192.0.2.0/24");
	ok(util_addr_parse("192.0.3.1", a) == 0 && !util_cidr_match(&r, a),
	   "192.0.3.1 not in it");
	ok(util_cidr_parse("192.0.2.0/25x", &r) == -1, "junk after bits");
	ok(util_cidr_parse("example.com", &r) == -1, "a name is no range");
	ok(util_cidr_parse("::/0", &r) == 0 && r.bits == 0 &&
	       util_addr_parse("2001:db8::1", a) == 0 && util_cidr_match(&r, a),
	   "::/0 matches everything");
	return tap_done();
}
