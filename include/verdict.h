/*
 * verdict.h: the one outcome of a message, its SMTP reply and the header
 * changes that go with it.
 */
#ifndef VERDICT_H
#define VERDICT_H

#include <stdbool.h>
#include <stddef.h>

/* In rising order of precedence when two checks disagree. */
enum action {
	ACT_ACCEPT = 0,
	ACT_TAG,
	ACT_QUARANTINE,
	ACT_TEMPFAIL,
	ACT_DISCARD,
	ACT_REJECT,
};

enum hdrop_kind {
	HDROP_ADD,    /* append name: value */
	HDROP_INSERT, /* insert at index (0 = top) */
	HDROP_CHANGE, /* replace the index-th header of name (from 1) */
	HDROP_DELETE, /* delete the index-th header of name (from 1) */
};

struct hdrop {
	enum hdrop_kind kind;
	char *name;
	char *value; /* unfolded, no leading space; NULL for delete */
	int index;
};

struct verdict {
	enum action action;
	char rcode[4];	/* "550", "451"; empty for accept */
	char xcode[10]; /* "5.7.0" */
	char text[512]; /* reply text, safe for SMTP */
	char reason[256];
	struct hdrop *ops;
	size_t nops;
};

const char *verdict_action_name(enum action a);
int verdict_action_parse(const char *s, enum action *a);
/*
 * Whether the message goes on (accept, tag, quarantine): only then are its
 * header changes made.
 */
bool verdict_delivers(enum action a);
void verdict_set(struct verdict *v, enum action a, const char *reason);
/*
 * A check proposes an action with its reason and reply text; it replaces
 * the current one only when stronger (see enum action). detail is the
 * enhanced status code without its class ("7.1"): the reply is 550 5.x.y
 * for reject and 451 4.x.y for tempfail, whatever the check wanted.
 */
void verdict_propose(struct verdict *v, enum action a, const char *reason,
		     const char *detail, const char *text);
void verdict_reply(struct verdict *v, const char *rcode, const char *xcode,
		   const char *text);
void verdict_hdr(struct verdict *v, enum hdrop_kind kind, const char *name,
		 int index, const char *value);
void verdict_free(struct verdict *v);

#endif
