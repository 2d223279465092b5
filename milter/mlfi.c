/*
 * mlfi.c: the libmilter callbacks. They only fill the msg object and apply
 * the verdict the pipeline returns: replies, header changes, quarantine.
 * State lives behind smfi_setpriv: Debian's libmilter runs the callbacks
 * of one connection on different threads, one at a time.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "edmilter.h"
#include "log.h"
#include "mlfi.h"
#include "pipe.h"
#include "snap.h"
#include "util.h"

struct mlfi_conn {
	struct snap *snap; /* the snapshot this connection started with */
	struct msg msg;
	struct pipe_session ps; /* what the rules decided so far */
	unsigned long proto;	/* protocol flags agreed with the MTA */
	bool in_msg;
};

/* Steps we skip, replies we never give early, byte-exact header values. */
#define MLFI_PROTO                                                             \
	(SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOEOH | SMFIP_NR_CONN |        \
	 SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR |        \
	 SMFIP_NR_UNKN | SMFIP_NR_DATA | SMFIP_NR_EOH | SMFIP_HDR_LEADSPC |    \
	 SMFIP_SKIP)
#define MLFI_ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE)

static atomic_int mlfi_messages;
/* Connection states made and not yet freed by mlfi_close. */
static atomic_int mlfi_conns;
static atomic_int mlfi_draining;

void
mlfi_drain(void)
{
	atomic_store(&mlfi_draining, 1);
}

static sfsistat mlfi_cont(const struct mlfi_conn *c, unsigned long nr);

/*
 * smfi_setreply with the text's '%' written "%%": libmilter reads the
 * text as a format and drops one with a lone '%'.
 */
static int
mlfi_setreply(SMFICTX *ctx, const struct verdict *v)
{
	char text[2 * sizeof(v->text)], *o = text;

	for (const char *p = v->text; *p; p++) {
		if (*p == '%')
			*o++ = '%';
		*o++ = *p;
	}
	*o = '\0';
	return smfi_setreply(ctx, (char *)v->rcode, (char *)v->xcode, text);
}

/* The protocol flags: no reply where no rule may answer early. */
static unsigned long
mlfi_proto(const struct snap *s)
{
	static const unsigned long nr[] = {SMFIP_NR_CONN, SMFIP_NR_HELO,
					   SMFIP_NR_MAIL, SMFIP_NR_RCPT};
	unsigned long p = MLFI_PROTO;

	/* Recipients past MaxRecipients are refused one by one. */
	if (!verdict_delivers(s->conf->on_recipient_limit))
		p &= ~SMFIP_NR_RCPT;
	if (s->rules == NULL)
		return p;
	for (int st = rules_earliest_needed(s->rules); st <= RULES_RCPT; st++)
		p &= ~nr[st];
	return p;
}

/*
 * Answers a stage as the rules asked: a refusal now (logged, as the
 * message's only line), or go on.
 */
static sfsistat
mlfi_answer(SMFICTX *ctx, struct mlfi_conn *c, enum action a,
	    const struct verdict *v, const char *stage, unsigned long nr)
{
	if (a == ACT_ACCEPT)
		return mlfi_cont(c, nr);
	if (c->proto & nr) {
		/* No reply agreed here: the end of DATA will refuse it. */
		log_qid(LOG_WARNING, c->msg.qid,
			"rules: %s decided at %s where no reply was agreed",
			v->reason, stage);
		return SMFIS_NOREPLY;
	}
	log_qid(LOG_INFO, c->msg.qid,
		"client=%s stage=%s verdict=%s reason=\"%s\"",
		c->msg.client_addr[0] ? c->msg.client_addr : "unknown", stage,
		verdict_action_name(a), v->reason);
	if (a == ACT_DISCARD)
		return SMFIS_DISCARD;
	if (v->rcode[0] != '\0' && mlfi_setreply(ctx, v) != MI_SUCCESS)
		log_qid(LOG_WARNING, c->msg.qid, "reply refused by libmilter");
	return a == ACT_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

int
mlfi_in_flight(void)
{
	return atomic_load(&mlfi_messages);
}

/* The connection state, made on first use: close may come without it. */
static struct mlfi_conn *
mlfi_get(SMFICTX *ctx)
{
	struct mlfi_conn *c = smfi_getpriv(ctx);
	struct snap *s;

	if (c != NULL)
		return c;
	if ((s = snap_get()) == NULL)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->snap = s;
	msg_init(&c->msg, (size_t)s->conf->max_message_size);
	c->msg.max_headers = (size_t)s->conf->max_headers;
	c->msg.max_header_size = (size_t)s->conf->max_header_size;
	if (smfi_setpriv(ctx, c) != MI_SUCCESS) {
		msg_free(&c->msg);
		snap_put(s);
		free(c);
		return NULL;
	}
	atomic_fetch_add(&mlfi_conns, 1);
	return c;
}

int
mlfi_connections(void)
{
	return atomic_load(&mlfi_conns);
}

/* CONTINUE, or NOREPLY where the MTA agreed to expect no reply. */
static sfsistat
mlfi_cont(const struct mlfi_conn *c, unsigned long nr)
{
	return (c->proto & nr) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

/* Set when the last message in flight ends, or a connection closes with
 * none in flight; see mlfi_idle_again. */
static atomic_bool mlfi_went_idle;

bool
mlfi_idle_again(void)
{
	return atomic_exchange(&mlfi_went_idle, false) &&
	       atomic_load(&mlfi_messages) == 0;
}

static void
mlfi_end_message(struct mlfi_conn *c)
{
	msg_reset(&c->msg);
	if (c->in_msg) {
		c->in_msg = false;
		if (atomic_fetch_sub(&mlfi_messages, 1) == 1)
			atomic_store(&mlfi_went_idle, true);
	}
}

static sfsistat
mlfi_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
	       unsigned long f2, unsigned long f3, unsigned long *pf0,
	       unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	struct mlfi_conn *c = mlfi_get(ctx);

	(void)f2, (void)f3;
	if (c == NULL)
		return SMFIS_TEMPFAIL;
	if ((f0 & MLFI_ACTIONS) != MLFI_ACTIONS)
		log_msg(LOG_WARNING,
			"the MTA offers no header changes or quarantine "
			"(actions 0x%lx): headers will not be added",
			f0);
	*pf0 = f0 & (MLFI_ACTIONS | SMFIF_SETSYMLIST);
	*pf1 = c->proto = f1 & mlfi_proto(c->snap);

	/* Stopping: answer the connect step, with a tempfail. */
	if (atomic_load(&mlfi_draining))
		*pf1 = c->proto &= ~SMFIP_NR_CONN;
	*pf2 = *pf3 = 0;

	/* Ask for the macros we use, and "i" wherever it may be set. */
	if (f0 & SMFIF_SETSYMLIST) {
		smfi_setsymlist(ctx, SMFIM_CONNECT, "j {client_addr}");
		smfi_setsymlist(ctx, SMFIM_ENVFROM,
				"i {auth_authen} {auth_type}");
		smfi_setsymlist(ctx, SMFIM_ENVRCPT, "i");
		smfi_setsymlist(ctx, SMFIM_EOM, "i");
	}
	return SMFIS_CONTINUE;
}

static sfsistat
mlfi_connect(SMFICTX *ctx, char *name, _SOCK_ADDR *sa)
{
	struct verdict vd = {0};
	enum action a;
	sfsistat rc;
	struct mlfi_conn *c = mlfi_get(ctx);
	char addr[INET6_ADDRSTRLEN] = "";
	const char *j;

	if (c == NULL)
		return SMFIS_TEMPFAIL;
	if (sa != NULL && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, addr,
			  sizeof(addr));
	else if (sa != NULL && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr,
			  addr, sizeof(addr));
	msg_set_client(&c->msg, addr, name);
	if (atomic_load(&mlfi_draining) && !(c->proto & SMFIP_NR_CONN))
		return SMFIS_TEMPFAIL;
	if ((j = smfi_getsymval(ctx, "j")) != NULL)
		msg_set_macro(&c->msg, "j", j);
	a = pipe_early(c->snap, &c->msg, &c->ps, RULES_CONNECT, NULL, &vd);
	rc = mlfi_answer(ctx, c, a, &vd, "CONNECT", SMFIP_NR_CONN);
	verdict_free(&vd);
	return rc;
}

static sfsistat
mlfi_helo(SMFICTX *ctx, char *helo)
{
	struct verdict vd = {0};
	enum action a;
	sfsistat rc;
	struct mlfi_conn *c = mlfi_get(ctx);

	if (c == NULL)
		return SMFIS_TEMPFAIL;
	msg_set_helo(&c->msg, helo);
	a = pipe_early(c->snap, &c->msg, &c->ps, RULES_HELO, NULL, &vd);
	rc = mlfi_answer(ctx, c, a, &vd, "HELO", SMFIP_NR_HELO);
	verdict_free(&vd);
	return rc;
}

static void
mlfi_macros(SMFICTX *ctx, struct mlfi_conn *c, const char *const *names)
{
	const char *v;

	for (; *names != NULL; names++)
		if ((v = smfi_getsymval(ctx, (char *)*names)) != NULL)
			msg_set_macro(&c->msg, *names, v);
}

/*
 * The queue id, once the MTA gives it (Postfix: at MAIL or at EOM), made
 * safe: it starts every log line of the message.
 */
static void
mlfi_qid(SMFICTX *ctx, struct mlfi_conn *c)
{
	const char *qid = smfi_getsymval(ctx, "i");

	if (qid != NULL && *qid != '\0')
		util_safe(c->msg.qid, sizeof(c->msg.qid), qid, true);
}

static sfsistat
mlfi_envfrom(SMFICTX *ctx, char **argv)
{
	struct verdict vd = {0};
	enum action a;
	sfsistat rc;
	static const char *const names[] = {"{auth_authen}", "{auth_type}",
					    NULL};
	struct mlfi_conn *c = mlfi_get(ctx);
	const char *v;

	if (c == NULL)
		return SMFIS_TEMPFAIL;
	mlfi_end_message(c);
	c->in_msg = true;
	atomic_fetch_add(&mlfi_messages, 1);
	mlfi_qid(ctx, c);
	msg_set_from(&c->msg, argv[0]);
	mlfi_macros(ctx, c, names);
	if ((v = smfi_getsymval(ctx, "{auth_authen}")) != NULL && *v)
		c->msg.auth = xstrdup(v);
	pipe_session_mail(&c->ps);
	a = pipe_early(c->snap, &c->msg, &c->ps, RULES_MAIL, NULL, &vd);
	rc = mlfi_answer(ctx, c, a, &vd, "MAIL", SMFIP_NR_MAIL);
	verdict_free(&vd);
	return rc;
}

static sfsistat
mlfi_envrcpt(SMFICTX *ctx, char **argv)
{
	struct verdict vd = {0};
	enum action a;
	sfsistat rc;
	struct mlfi_conn *c = mlfi_get(ctx);

	if (c == NULL)
		return SMFIS_TEMPFAIL;
	mlfi_qid(ctx, c);
	if (c->msg.nrcpts >= (size_t)c->snap->conf->max_recipients &&
	    (a = pipe_rcpt_limit(c->snap->conf, &c->msg, argv[0], &vd)) !=
		ACT_ACCEPT) {
		rc = mlfi_answer(ctx, c, a, &vd, "RCPT", SMFIP_NR_RCPT);
		verdict_free(&vd);
		return rc;
	}
	/* A recipient the rules refuse is not the message's. */
	msg_add_rcpt(&c->msg, argv[0]);
	a = pipe_early(c->snap, &c->msg, &c->ps, RULES_RCPT,
		       c->msg.rcpts[c->msg.nrcpts - 1], &vd);
	if (a != ACT_ACCEPT)
		free(c->msg.rcpts[--c->msg.nrcpts]);
	rc = mlfi_answer(ctx, c, a, &vd, "RCPT", SMFIP_NR_RCPT);
	verdict_free(&vd);
	return rc;
}

static sfsistat
mlfi_header(SMFICTX *ctx, char *name, char *value)
{
	struct mlfi_conn *c = mlfi_get(ctx);
	char *v;

	if (c == NULL)
		return SMFIS_TEMPFAIL;
	if (c->proto & SMFIP_HDR_LEADSPC) {
		msg_add_header(&c->msg, name, value);
	} else {
		/* Without LEADSPC the MTA ate the space after the colon. */
		v = xmalloc(strlen(value) + 2);
		v[0] = ' ';
		strcpy(v + 1, value);
		msg_add_header(&c->msg, name, v);
		free(v);
	}
	return mlfi_cont(c, SMFIP_NR_HDR);
}

static sfsistat
mlfi_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct mlfi_conn *c = mlfi_get(ctx);

	if (c == NULL)
		return SMFIS_TEMPFAIL;
	msg_add_body(&c->msg, chunk, len);

	/*
	 * Past the size limit, or past a header limit that refuses the
	 * message, the verdict is known: no need for the rest.
	 */
	if ((c->proto & SMFIP_SKIP) &&
	    (c->msg.truncated ||
	     (c->msg.over_headers != NULL &&
	      !verdict_delivers(c->snap->conf->on_header_limit))))
		return SMFIS_SKIP;
	return SMFIS_CONTINUE;
}

/*
 * Makes the header changes of the verdict; logs any the MTA refuses.
 * Returns -1 when a header that had to go (a forged one) could not be
 * deleted: such a message must not be delivered as it is.
 */
static int
mlfi_apply_headers(SMFICTX *ctx, struct mlfi_conn *c, const struct verdict *v)
{
	const char *qid = c->msg.qid;
	int ret = 0;

	for (size_t i = 0; i < v->nops; i++) {
		const struct hdrop *op = &v->ops[i];
		char *val = NULL;
		int rc = MI_FAILURE;

		if (op->value != NULL) {
			val = xmalloc(strlen(op->value) + 2);
			sprintf(val, "%s%s",
				(c->proto & SMFIP_HDR_LEADSPC) ? " " : "",
				op->value);
		}
		switch (op->kind) {
		case HDROP_ADD:
			rc = smfi_addheader(ctx, op->name, val);
			break;
		case HDROP_INSERT:
			rc = smfi_insheader(ctx, op->index, op->name, val);
			break;
		case HDROP_CHANGE:
		case HDROP_DELETE:
			rc = smfi_chgheader(ctx, op->name, op->index, val);
			break;
		}
		/* A forged header left, or unchecked mail left unmarked. */
		if (rc != MI_SUCCESS &&
		    (op->kind == HDROP_DELETE ||
		     strcasecmp(op->name, "X-Edmilter-Unchecked") == 0))
			ret = -1;
		if (rc != MI_SUCCESS)
			log_qid(LOG_WARNING, qid,
				"header %s: change refused "
				"by the MTA",
				op->name);
		free(val);
	}
	return ret;
}

/* The quarantine reason: a rule's own text, else the verdict's reason. */
static char *
mlfi_hold_reason(struct pipe_report *r)
{
	if (r->rules.decided && r->rules.action == ACT_QUARANTINE &&
	    r->rules.text[0] != '\0')
		return r->rules.text;
	return r->verdict.reason;
}

static sfsistat
mlfi_eom(SMFICTX *ctx)
{
	struct mlfi_conn *c = mlfi_get(ctx);
	struct pipe_report r;
	const char *qid;
	sfsistat ret = SMFIS_CONTINUE;

	if (c == NULL)
		return SMFIS_TEMPFAIL;
	if ((qid = smfi_getsymval(ctx, "i")) != NULL)
		util_safe(c->msg.qid, sizeof(c->msg.qid), qid, true);
	msg_end_headers(&c->msg);
	pipe_run(c->snap, &c->msg, &c->ps, &r);

	if (r.verdict.action == ACT_QUARANTINE &&
	    smfi_quarantine(ctx, mlfi_hold_reason(&r)) != MI_SUCCESS) {
		log_qid(LOG_ERR, c->msg.qid,
			"quarantine refused by the MTA; tempfail");
		verdict_set(&r.verdict, ACT_TEMPFAIL,
			    "quarantine refused by the MTA");
		verdict_reply(&r.verdict, "451", "4.3.0",
			      "temporary local problem, try again later");
	}
	if (verdict_delivers(r.verdict.action) &&
	    mlfi_apply_headers(ctx, c, &r.verdict) < 0) {
		log_qid(LOG_ERR, c->msg.qid,
			"a forged header could not be removed, or unchecked "
			"mail marked; tempfail");
		verdict_set(&r.verdict, ACT_TEMPFAIL,
			    "a header change the MTA refused");
		verdict_reply(&r.verdict, "451", "4.3.0",
			      "temporary local problem, try again later");
	}
	switch (r.verdict.action) {
	case ACT_REJECT:
	case ACT_TEMPFAIL:
		if (r.verdict.rcode[0] != '\0' &&
		    mlfi_setreply(ctx, &r.verdict) != MI_SUCCESS)
			log_qid(LOG_WARNING, c->msg.qid,
				"reply refused by libmilter");
		ret = r.verdict.action == ACT_REJECT ? SMFIS_REJECT
						     : SMFIS_TEMPFAIL;
		break;
	case ACT_DISCARD:
		ret = SMFIS_DISCARD;
		break;
	default:
		ret = SMFIS_CONTINUE;
		break;
	}
	pipe_log(&c->msg, &r);
	pipe_report_free(&r);
	mlfi_end_message(c);
	return ret;
}

static sfsistat
mlfi_abort(SMFICTX *ctx)
{
	struct mlfi_conn *c = smfi_getpriv(ctx);

	if (c != NULL)
		mlfi_end_message(c);
	return SMFIS_CONTINUE;
}

static sfsistat
mlfi_close(SMFICTX *ctx)
{
	struct mlfi_conn *c = smfi_getpriv(ctx);

	if (c == NULL)
		return SMFIS_CONTINUE;
	mlfi_end_message(c);
	msg_free(&c->msg);
	pipe_session_free(&c->ps);
	snap_put(c->snap);
	free(c);
	smfi_setpriv(ctx, NULL);
	atomic_fetch_sub(&mlfi_conns, 1);
	/* A connection's buffers outlive its last message: freed now, they
	 * are for the next look too. */
	if (atomic_load(&mlfi_messages) == 0)
		atomic_store(&mlfi_went_idle, true);
	return SMFIS_CONTINUE;
}

struct smfiDesc mlfi_desc = {
    .xxfi_name = EDM_NAME,
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = MLFI_ACTIONS | SMFIF_SETSYMLIST,
    .xxfi_connect = mlfi_connect,
    .xxfi_helo = mlfi_helo,
    .xxfi_envfrom = mlfi_envfrom,
    .xxfi_envrcpt = mlfi_envrcpt,
    .xxfi_header = mlfi_header,
    .xxfi_body = mlfi_body,
    .xxfi_eom = mlfi_eom,
    .xxfi_abort = mlfi_abort,
    .xxfi_close = mlfi_close,
    .xxfi_negotiate = mlfi_negotiate,
};
