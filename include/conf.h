/*
 * conf.h: edmilter.conf, parsed from one table of keys.
 */
#ifndef CONF_H
#define CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"
#include "verdict.h"

#define CONF_MAX_KEYS 96
/* The longest TemporaryDirectory: libclamav works some levels below it. */
#define CONF_MAX_TMPDIR 1024

struct conf {
	char *path;
	unsigned lines[CONF_MAX_KEYS]; /* where each key was set; 0: default */

	/* Daemon. */
	char *socket;
	long socket_mode;
	char *socket_group;
	char *user;
	bool allow_root;
	char *pidfile;
	long milter_timeout;
	bool syslog;
	int syslog_facility;
	bool log_debug;
	char *authserv_id;
	char *hostname; /* this host, for headers */

	/* ClamAV. */
	char *clamav_db;
	long long clamav_max_scansize;
	long long clamav_max_filesize;
	long clamav_max_recursion;
	long clamav_max_files;
	long clamav_max_scantime;
	char *tmpdir;
	enum action on_infected;
	long clamav_check_interval; /* seconds; 0: only on SIGUSR1 */

	/*
	 * What to do when a check could not be made (accept with a header,
	 * quarantine, tempfail or reject): one key per kind of failure.
	 */
	enum action on_no_engine;
	enum action on_scan_error;
	enum action on_scan_timeout;
	enum action on_scan_limit;
	enum action on_oversize;
	enum action on_internal_error;
	char *reject_message;
	char *tag_subject;
	bool add_headers;
	long long max_message_size;

	/* Sender authentication. */
	char *nameservers;
	long dns_timeout;
	bool auth_checks;
	bool add_received_spf;
	long min_key_bits;
	long max_signatures;
	char *public_suffix_list;
	enum action on_dmarc_reject;
	enum action on_dmarc_quarantine;
	enum action on_auth_temp_error;
	enum action on_auth_perm_error;

	/* Rules and scores. */
	char *rules_path;
	double score_tag;
	double score_quarantine;
	double score_reject;
	char *spam_tag_subject;
	long mime_max_depth;
	long mime_max_parts;
	long long mime_max_decoded;
	enum action on_mime_limit;

	/* Limits of the SMTP transaction. */
	long max_headers;
	long long max_header_size;
	enum action on_header_limit;
	long max_recipients;
	enum action on_recipient_limit;
	struct cidr *internal;
	size_t ninternal;
};

/*
 * Reads path into a new conf. Every error found is added to errs as
 * "file:line: message"; returns 0, or -1 with *out left NULL. A relative
 * file or folder in it (PidFile, ClamAVDatabase, TemporaryDirectory,
 * PublicSuffixList, RulesPath) is made absolute from path's folder.
 */
int conf_load(const char *path, struct conf **out, struct errlist *errs);
/* A conf with every default, for the offline scanner without -c. */
struct conf *conf_defaults(void);
void conf_free(struct conf *c);
/* Was any key set in the file (not all defaults)? */
bool conf_any_set(const struct conf *c);
/* "file:line" of a key as set in the file, or "file" for a default. */
void conf_where(const struct conf *c, const char *key, char *out, size_t len);
bool conf_is_internal(const struct conf *c, const char *addr);
/* Writes every key and its default, as documentation. */
void conf_dump_defaults(void);

#endif
