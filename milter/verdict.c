/*
 * verdict.c: the outcome of a message. A check proposes an action; the
 * strongest one wins (see enum action). Replies are kept SMTP-safe here,
 * once, whatever a check put in them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"
#include "verdict.h"

static const char *verdict_names[] = {
    "accept", "tag", "quarantine", "tempfail", "discard", "reject",
};

const char *
verdict_action_name(enum action a)
{
	return verdict_names[a];
}

int
verdict_action_parse(const char *s, enum action *a)
{
	for (size_t i = 0; i < sizeof(verdict_names) / sizeof(*verdict_names);
	     i++)
		if (strcasecmp(s, verdict_names[i]) == 0) {
			*a = (enum action)i;
			return 0;
		}
	return -1;
}

bool
verdict_delivers(enum action a)
{
	return a == ACT_ACCEPT || a == ACT_TAG || a == ACT_QUARANTINE;
}

void
verdict_set(struct verdict *v, enum action a, const char *reason)
{
	v->action = a;
	util_safe(v->reason, sizeof(v->reason), reason, false);
	v->rcode[0] = v->xcode[0] = v->text[0] = '\0';
}

void
verdict_propose(struct verdict *v, enum action a, const char *reason,
		const char *detail, const char *text)
{
	char xcode[16];

	if (a <= v->action)
		return;
	verdict_set(v, a, reason);

	/* The reply's class follows the action that won, never the check. */
	if (a == ACT_REJECT) {
		snprintf(xcode, sizeof(xcode), "5.%s", detail);
		verdict_reply(v, "550", xcode, text);
	} else if (a == ACT_TEMPFAIL) {
		snprintf(xcode, sizeof(xcode), "4.%s", detail);
		verdict_reply(v, "451", xcode, text);
	}
}

void
verdict_reply(struct verdict *v, const char *rcode, const char *xcode,
	      const char *text)
{
	util_safe(v->rcode, sizeof(v->rcode), rcode, true);
	util_safe(v->xcode, sizeof(v->xcode), xcode, true);
	util_safe(v->text, sizeof(v->text), text, false);
	/* Plain text: mlfi escapes '%' for libmilter when it replies. */
}

void
verdict_hdr(struct verdict *v, enum hdrop_kind kind, const char *name,
	    int index, const char *value)
{
	struct hdrop *op;
	size_t len;

	v->ops = xrealloc(v->ops, (v->nops + 1) * sizeof(*v->ops));
	op = &v->ops[v->nops++];
	op->kind = kind;
	op->name = xstrdup(name);
	op->index = index;
	op->value = NULL;
	if (value != NULL) {
		/* Made safe, never cut: a cut header could lose its end. */
		len = strlen(value) + 1;
		op->value = xmalloc(len);
		util_safe_header(op->value, len, value);
	}
}

void
verdict_free(struct verdict *v)
{
	for (size_t i = 0; i < v->nops; i++) {
		free(v->ops[i].name);
		free(v->ops[i].value);
	}
	free(v->ops);
	v->ops = NULL;
	v->nops = 0;
}
