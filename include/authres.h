/*
 * authres.h: one RFC 8601 Authentication-Results header per message.
 */
#ifndef AUTHRES_H
#define AUTHRES_H

#include <stdbool.h>
#include <stddef.h>

#include "dkimv.h"
#include "dmarc.h"
#include "msg.h"
#include "spf.h"
#include "util.h"

struct authres_input {
	const char *authserv_id;
	const char *skipped;   /* why SPF and DMARC were not checked, or NULL */
	const char *auth_user; /* an authenticated sender, or NULL */
	const struct spf_check *spf; /* NULL when not checked */
	const char *mailfrom;	     /* envelope sender, "" for null */
	const char *helo;	     /* NULL when not valid */
	const struct dkimv_report *dkim;
	const struct dmarc_check *dmarc; /* NULL when not checked */
};

/* The header value (no name, no leading space), folded with "\n\t". */
void authres_build(const struct authres_input *in, struct buf *out);

/*
 * The authserv-id of an Authentication-Results value, comments skipped,
 * into out; -1 when there is none.
 */
int authres_id(const char *value, char *out, size_t len);

/*
 * Writes s as an RFC 8601 value: a token as is, anything else as a quoted
 * string with quotes and backslashes escaped and control bytes dropped.
 */
void authres_value(struct buf *out, const char *s);

#endif
