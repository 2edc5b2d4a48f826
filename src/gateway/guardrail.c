/* gateway/guardrail.c — policy compile, segment-wise evaluation, masking,
 * streaming and the ApplyGuardrail-shaped result (see guardrail.h). */
#include "gateway/guardrail.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/pii.h"

#define MAX_TOPICS 30
#define MAX_TOPIC_NAME 100
#define MAX_TOPIC_DEFINITION 200
#define MAX_WORDS 10000
#define DEFAULT_BLOCKED_MESSAGE "Sorry, the model cannot answer this question."

typedef struct gr_regex {
    char *name;
    pcre2_code *re;
    gr_action action;
} gr_regex;

typedef struct gr_topic {
    char *name;
    char *definition; /* documentation only: topics are matched by phrase */
    pcre2_code *re;
} gr_topic;

struct gr_policy {
    char *name;
    int applies[2]; /* indexed by gr_source */
    gr_action pii_action[PII_N_TYPES];
    unsigned pii_mask;
    gr_regex *regexes;
    int n_regexes;
    pcre2_code *words; /* all custom words in one alternation; NULL when none */
    int profanity;
    gr_topic *topics;
    int n_topics;
    int attack; /* prompt_attack configured */
    gr_action attack_action;
    double attack_threshold;
    long max_input_chars; /* 0: no cap */
    char *blocked_message[2];
};

/* ---- built-in lists ---------------------------------------------------- */

/* A deliberately short managed list of common English profanity. */
static const char *const profanity_words[] = {
    "damn", "crap", "shit*", "bullshit", "fuck*", "motherfucker*", "asshole*", "bastard*",
    "bollocks", "dickhead*", "wanker*", "piss off",
};

/* Prompt-attack heuristics: each pattern that matches adds evidence, and
 * the score is 1 - prod(1 - weight) so independent signals accumulate. */
static const struct {
    const char *pattern;
    double weight;
} attack_patterns[] = {
    {"\\b(ignore|disregard|forget|skip|override)\\s+(all\\s+|any\\s+|the\\s+|your\\s+|my\\s+|of\\s+)*"
     "(previous|prior|above|earlier|preceding|initial|original)\\s+"
     "(instructions?|prompts?|rules|directions|guidelines|context|messages?)",
     0.9},
    {"\\b(disregard|ignore|forget|reveal|print|show|repeat|output)\\s+(your|the)\\s+"
     "(system\\s+(prompt|message)|initial\\s+prompt|hidden\\s+instructions)",
     0.8},
    {"\\byou\\s+are\\s+(now\\s+)?(DAN|jailbroken|an?\\s+(unrestricted|unfiltered|uncensored)\\b)", 0.9},
    {"\\bdo\\s+anything\\s+now\\b", 0.6},
    {"\\b(enable|enter|activate|switch\\s+to|in)\\s+(the\\s+)?developer\\s+mode\\b|"
     "\\bdeveloper\\s+mode\\s+(enabled|on|output)\\b",
     0.7},
    {"\\bpretend\\s+(that\\s+)?(you\\s+)?(have|had|are|were)\\s+(no|without)\\s+"
     "(restrictions|rules|filters|limits|limitations|guidelines)",
     0.8},
    {"\\b(act|behave|respond|answer)\\s+as\\s+(if\\s+you\\s+(are|were)\\s+)?an?\\s+"
     "(unfiltered|uncensored|unrestricted|evil|jailbroken)\\b",
     0.6},
    {"\\b(role-?\\s?play|let'?s\\s+play\\s+a\\s+game|stay\\s+in\\s+character)\\b.{0,80}?"
     "\\b(no|without|ignore)\\s+(rules|restrictions|limits|filters|guidelines|ethics)",
     0.6},
    {"\\bjailbreak(s|ed|ing)?\\b", 0.4},
    {"\\bnew\\s+(system\\s+)?instructions\\s*:", 0.4},
    {"\\bwithout\\s+(any\\s+)?(restrictions|censorship|filters|moral)", 0.3},
};
#define N_ATTACK (sizeof attack_patterns / sizeof attack_patterns[0])
#define N_PROFANITY (sizeof profanity_words / sizeof profanity_words[0])

static pcre2_code *g_attack_re[N_ATTACK];
static pcre2_code *g_profanity_re;
static bs_error g_builtin_err;
static pthread_once_t g_builtin_once = PTHREAD_ONCE_INIT;

static bs_status word_regex(const char *const *words, int n, const char *what, pcre2_code **out,
                            bs_error *err);

static void builtin_init(void) {
    for (size_t i = 0; i < N_ATTACK; i++)
        if (pii_regex_compile(attack_patterns[i].pattern, PCRE2_CASELESS | PCRE2_UCP,
                              "prompt-attack pattern", &g_attack_re[i], &g_builtin_err) != BS_OK)
            return;
    if (word_regex(profanity_words, (int)N_PROFANITY, "profanity list", &g_profanity_re,
                   &g_builtin_err) != BS_OK)
        return;
    g_builtin_err.status = BS_OK;
}

static bs_status builtins(bs_error *err) {
    pthread_once(&g_builtin_once, builtin_init);
    if (g_builtin_err.status != BS_OK)
        return bs_fail(err, BS_EUNSUPPORTED, "guardrail built-ins: %s", g_builtin_err.msg);
    return BS_OK;
}

/* ---- small helpers ----------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sb_add(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return -1;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int sb_str(sbuf *b, const char *s) { return sb_add(b, s, strlen(s)); }

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

/* Denied words and topic phrases become regex alternatives: literal text,
 * whitespace runs as \s+ (so phrases are whitespace-normalized), '*' as a
 * word-character wildcard; the whole list sits between word boundaries. */
static int add_literal(sbuf *b, const char *w, int wildcard) {
    for (const char *p = w; *p; p++) {
        unsigned char c = (unsigned char)*p;
        int rc;
        if (isspace(c)) {
            while (isspace((unsigned char)p[1])) p++;
            rc = sb_str(b, "\\s+");
        } else if (c == '*' && wildcard) {
            rc = sb_str(b, "\\w*");
        } else if (isalnum(c) || c >= 0x80) {
            rc = sb_add(b, p, 1);
        } else {
            char esc[2] = {'\\', (char)c};
            rc = sb_add(b, esc, 2);
        }
        if (rc) return -1;
    }
    return 0;
}

static bs_status word_regex(const char *const *words, int n, const char *what, pcre2_code **out,
                            bs_error *err) {
    sbuf b = {0};
    int bad = sb_str(&b, "(?<!\\w)(?:");
    for (int i = 0; i < n && !bad; i++) {
        if (i) bad |= sb_str(&b, "|");
        bad |= add_literal(&b, words[i], 1);
    }
    bad |= sb_str(&b, ")(?!\\w)");
    if (bad) {
        free(b.p);
        return bs_fail(err, BS_ENOMEM, "%s: out of memory", what);
    }
    bs_status st = pii_regex_compile(b.p, PCRE2_CASELESS | PCRE2_UCP, what, out, err);
    free(b.p);
    return st;
}

/* Trim leading/trailing whitespace into a new string; NULL when empty. */
static char *trimmed(const char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    return n ? strndup(s, n) : NULL;
}

/* ---- compile ----------------------------------------------------------- */

void guardrail_free(gr_policy *p) {
    if (!p) return;
    free(p->name);
    for (int i = 0; i < p->n_regexes; i++) {
        free(p->regexes[i].name);
        pcre2_code_free(p->regexes[i].re);
    }
    free(p->regexes);
    pcre2_code_free(p->words);
    for (int i = 0; i < p->n_topics; i++) {
        free(p->topics[i].name);
        free(p->topics[i].definition);
        pcre2_code_free(p->topics[i].re);
    }
    free(p->topics);
    free(p->blocked_message[0]);
    free(p->blocked_message[1]);
    free(p);
}

const char *guardrail_name(const gr_policy *p) { return p->name; }

static int parse_action(const json_t *v, int allow_anonymize, gr_action *out) {
    const char *s = json_string_value(v);
    if (!s) return -1;
    if (strcasecmp(s, "block") == 0) *out = GR_ACT_BLOCK;
    else if (strcasecmp(s, "none") == 0) *out = GR_ACT_NONE;
    else if (allow_anonymize && strcasecmp(s, "anonymize") == 0) *out = GR_ACT_ANONYMIZE;
    else return -1;
    return 0;
}

static bs_status compile_apply_to(gr_policy *p, const json_t *v, bs_error *err) {
    p->applies[GR_INPUT] = p->applies[GR_OUTPUT] = 0;
    size_t i;
    const json_t *e;
    if (!json_is_array(v) || json_array_size(v) == 0)
        return bs_fail(err, BS_EINVAL, "guardrail %s: apply_to: expected a list of input/output",
                       p->name);
    json_array_foreach(v, i, e) {
        const char *s = json_string_value(e);
        if (s && strcmp(s, "input") == 0) p->applies[GR_INPUT] = 1;
        else if (s && strcmp(s, "output") == 0) p->applies[GR_OUTPUT] = 1;
        else
            return bs_fail(err, BS_EINVAL, "guardrail %s: apply_to[%zu]: expected input or output",
                           p->name, i);
    }
    return BS_OK;
}

static bs_status compile_pii(gr_policy *p, const json_t *v, bs_error *err) {
    const char *k;
    json_t *a;
    if (!json_is_object(v))
        return bs_fail(err, BS_EINVAL, "guardrail %s: pii: expected a mapping ENTITY: action",
                       p->name);
    json_object_foreach((json_t *)v, k, a) {
        int t = pii_type_from_name(k);
        if (t < 0)
            return bs_fail(err, BS_EINVAL, "guardrail %s: pii.%s: unknown entity (known: %s)",
                           p->name, k, pii_known_names());
        if (parse_action(a, 1, &p->pii_action[t]))
            return bs_fail(err, BS_EINVAL,
                           "guardrail %s: pii.%s: action must be block, anonymize or none",
                           p->name, k);
        p->pii_mask |= 1u << t;
    }
    return BS_OK;
}

static bs_status compile_regexes(gr_policy *p, const json_t *v, bs_error *err) {
    if (!json_is_array(v))
        return bs_fail(err, BS_EINVAL, "guardrail %s: regexes: expected a list", p->name);
    p->regexes = calloc(json_array_size(v) + 1, sizeof *p->regexes);
    if (!p->regexes) return bs_fail(err, BS_ENOMEM, "guardrail %s: out of memory", p->name);
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *pat = json_string_value(json_object_get(e, "pattern"));
        const json_t *act = json_object_get(e, "action");
        if (!json_is_object(e) || !name || !*name)
            return bs_fail(err, BS_EINVAL, "guardrail %s: regexes[%zu].name: required string",
                           p->name, i);
        if (!pat || !*pat)
            return bs_fail(err, BS_EINVAL, "guardrail %s: regexes.%s.pattern: required string",
                           p->name, name);
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)e, key, val) {
            if (strcmp(key, "name") && strcmp(key, "pattern") && strcmp(key, "action"))
                return bs_fail(err, BS_EINVAL,
                               "guardrail %s: regexes.%s.%s: unknown key (known: name, pattern, action)",
                               p->name, name, key);
        }
        gr_regex *r = &p->regexes[p->n_regexes];
        r->action = GR_ACT_BLOCK;
        if (act && parse_action(act, 1, &r->action))
            return bs_fail(err, BS_EINVAL,
                           "guardrail %s: regexes.%s.action: must be block, anonymize or none",
                           p->name, name);
        char what[200];
        snprintf(what, sizeof what, "guardrail %s: regexes.%s.pattern", p->name, name);
        if (pii_regex_compile(pat, 0, what, &r->re, err) != BS_OK) return err ? err->status : BS_EINVAL;
        if (!(r->name = strdup(name))) {
            pcre2_code_free(r->re);
            return bs_fail(err, BS_ENOMEM, "guardrail %s: out of memory", p->name);
        }
        p->n_regexes++;
    }
    return BS_OK;
}

/* Strings of a list, trimmed; NULL (with err) when an entry is not a
 * non-empty string.  The caller frees each and the array. */
static char **string_list(const gr_policy *p, const json_t *v, const char *key, size_t max,
                          int *n_out, bs_error *err) {
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > max) {
        bs_fail(err, BS_EINVAL, "guardrail %s: %s: expected a list of 1 to %zu strings", p->name,
                key, max);
        return NULL;
    }
    size_t n = json_array_size(v);
    char **out = calloc(n, sizeof *out);
    if (!out) {
        bs_fail(err, BS_ENOMEM, "guardrail %s: out of memory", p->name);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(v, i));
        if (!s || !(out[i] = trimmed(s))) {
            bs_fail(err, BS_EINVAL, "guardrail %s: %s[%zu]: expected a non-empty string", p->name,
                    key, i);
            for (size_t k = 0; k < i; k++) free(out[k]);
            free(out);
            return NULL;
        }
    }
    *n_out = (int)n;
    return out;
}

static void free_list(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static bs_status compile_words(gr_policy *p, const json_t *v, bs_error *err) {
    int n;
    char **w = string_list(p, v, "denied_words", MAX_WORDS, &n, err);
    if (!w) return err ? err->status : BS_EINVAL;
    char what[160];
    snprintf(what, sizeof what, "guardrail %s: denied_words", p->name);
    bs_status st = word_regex((const char *const *)w, n, what, &p->words, err);
    free_list(w, n);
    return st;
}

static bs_status compile_topics(gr_policy *p, const json_t *v, bs_error *err) {
    if (!json_is_array(v) || json_array_size(v) > MAX_TOPICS)
        return bs_fail(err, BS_EINVAL, "guardrail %s: denied_topics: expected a list of at most %d",
                       p->name, MAX_TOPICS);
    p->topics = calloc(json_array_size(v) + 1, sizeof *p->topics);
    if (!p->topics) return bs_fail(err, BS_ENOMEM, "guardrail %s: out of memory", p->name);
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        const json_t *def = json_object_get(e, "definition");
        if (!json_is_object(e) || !name || !*name || strlen(name) > MAX_TOPIC_NAME)
            return bs_fail(err, BS_EINVAL,
                           "guardrail %s: denied_topics[%zu].name: required, at most %d chars",
                           p->name, i, MAX_TOPIC_NAME);
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)e, key, val) {
            if (strcmp(key, "name") && strcmp(key, "phrases") && strcmp(key, "definition"))
                return bs_fail(err, BS_EINVAL,
                               "guardrail %s: denied_topics.%s.%s: unknown key (known: name, "
                               "phrases, definition)",
                               p->name, name, key);
        }
        if (def && (!json_is_string(def) || json_string_length(def) > MAX_TOPIC_DEFINITION))
            return bs_fail(err, BS_EINVAL,
                           "guardrail %s: denied_topics.%s.definition: a string of at most %d chars",
                           p->name, name, MAX_TOPIC_DEFINITION);
        char key_name[160];
        snprintf(key_name, sizeof key_name, "denied_topics.%s.phrases", name);
        int n;
        char **ph = string_list(p, json_object_get(e, "phrases"), key_name, 100, &n, err);
        if (!ph) return err ? err->status : BS_EINVAL;
        gr_topic *t = &p->topics[p->n_topics];
        char what[200];
        snprintf(what, sizeof what, "guardrail %s: %s", p->name, key_name);
        bs_status st = word_regex((const char *const *)ph, n, what, &t->re, err);
        free_list(ph, n);
        if (st != BS_OK) return st;
        t->name = strdup(name);
        t->definition = xstrdup(json_string_value(def));
        p->n_topics++;
        if (!t->name || (def && !t->definition))
            return bs_fail(err, BS_ENOMEM, "guardrail %s: out of memory", p->name);
    }
    return BS_OK;
}

static bs_status compile_attack(gr_policy *p, const json_t *v, bs_error *err) {
    p->attack_action = GR_ACT_BLOCK;
    p->attack_threshold = 0.5;
    if (json_is_boolean(v)) {
        p->attack = json_is_true(v);
        return BS_OK;
    }
    if (!json_is_object(v))
        return bs_fail(err, BS_EINVAL,
                       "guardrail %s: prompt_attack: expected true/false or {action, threshold}",
                       p->name);
    p->attack = 1;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        if (strcmp(key, "action") == 0) {
            if (parse_action(val, 0, &p->attack_action))
                return bs_fail(err, BS_EINVAL,
                               "guardrail %s: prompt_attack.action: must be block or none", p->name);
        } else if (strcmp(key, "threshold") == 0) {
            if (!json_is_number(val) || json_number_value(val) <= 0 || json_number_value(val) > 1)
                return bs_fail(err, BS_EINVAL,
                               "guardrail %s: prompt_attack.threshold: a number in (0, 1]", p->name);
            p->attack_threshold = json_number_value(val);
        } else {
            return bs_fail(err, BS_EINVAL,
                           "guardrail %s: prompt_attack.%s: unknown key (known: action, threshold)",
                           p->name, key);
        }
    }
    return BS_OK;
}

static bs_status compile_key(gr_policy *p, const char *key, const json_t *v, bs_error *err) {
    if (strcmp(key, "name") == 0) {
        if (!json_is_string(v))
            return bs_fail(err, BS_EINVAL, "guardrail %s: name: expected a string", p->name);
        return BS_OK;
    }
    if (strcmp(key, "apply_to") == 0) return compile_apply_to(p, v, err);
    if (strcmp(key, "pii") == 0) return compile_pii(p, v, err);
    if (strcmp(key, "regexes") == 0) return compile_regexes(p, v, err);
    if (strcmp(key, "denied_words") == 0) return compile_words(p, v, err);
    if (strcmp(key, "denied_topics") == 0) return compile_topics(p, v, err);
    if (strcmp(key, "prompt_attack") == 0) return compile_attack(p, v, err);
    if (strcmp(key, "profanity") == 0) {
        if (!json_is_boolean(v))
            return bs_fail(err, BS_EINVAL, "guardrail %s: profanity: expected true or false",
                           p->name);
        p->profanity = json_is_true(v);
        return BS_OK;
    }
    if (strcmp(key, "max_input_chars") == 0) {
        if (!json_is_integer(v) || json_integer_value(v) <= 0)
            return bs_fail(err, BS_EINVAL, "guardrail %s: max_input_chars: a positive integer",
                           p->name);
        p->max_input_chars = (long)json_integer_value(v);
        return BS_OK;
    }
    int which = strcmp(key, "blocked_input_message") == 0    ? GR_INPUT
                : strcmp(key, "blocked_output_message") == 0 ? GR_OUTPUT
                                                             : -1;
    if (which >= 0) {
        if (!json_is_string(v) || json_string_length(v) == 0)
            return bs_fail(err, BS_EINVAL, "guardrail %s: %s: expected a non-empty string",
                           p->name, key);
        if (!(p->blocked_message[which] = strdup(json_string_value(v))))
            return bs_fail(err, BS_ENOMEM, "guardrail %s: out of memory", p->name);
        return BS_OK;
    }
    return bs_fail(err, BS_EINVAL,
                   "guardrail %s: %s: unknown key (known: apply_to, pii, regexes, denied_words, "
                   "profanity, denied_topics, prompt_attack, max_input_chars, "
                   "blocked_input_message, blocked_output_message)",
                   p->name, key);
}

bs_status guardrail_compile(const char *name, const json_t *spec, gr_policy **out, bs_error *err) {
    *out = NULL;
    if (builtins(err) != BS_OK) return err ? err->status : BS_EUNSUPPORTED;
    if (!json_is_object(spec))
        return bs_fail(err, BS_EINVAL, "guardrail %s: expected a mapping of policy keys", name);
    gr_policy *p = calloc(1, sizeof *p);
    if (!p || !(p->name = strdup(name))) {
        free(p);
        return bs_fail(err, BS_ENOMEM, "guardrail %s: out of memory", name);
    }
    p->applies[GR_INPUT] = p->applies[GR_OUTPUT] = 1;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)spec, key, v) {
        bs_status st = compile_key(p, key, v, err);
        if (st != BS_OK) {
            guardrail_free(p);
            return st;
        }
    }
    for (int s = 0; s < 2; s++)
        if (!p->blocked_message[s] && !(p->blocked_message[s] = strdup(DEFAULT_BLOCKED_MESSAGE))) {
            guardrail_free(p);
            return bs_fail(err, BS_ENOMEM, "guardrail %s: out of memory", name);
        }
    *out = p;
    return BS_OK;
}

/* ---- evaluation -------------------------------------------------------- */

static int is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

/* End of the segment starting at `start`, or 0 when the text so far cannot
 * decide it.  A boundary depends only on bytes before it (a newline, or
 * whitespace after . ! ?), so a stream and a whole text cut identically.
 * Without one within GR_WINDOW bytes the cut falls after the last
 * whitespace of the window's second half, else on a UTF-8 character start. */
static size_t segment_end(const char *t, size_t len, size_t start, int final) {
    size_t lim = start + GR_WINDOW;
    for (size_t p = start + 1; p <= len && p <= lim; p++) {
        if (t[p - 1] == '\n') return p;
        if (p >= start + 2 && is_ws(t[p - 1]) &&
            (t[p - 2] == '.' || t[p - 2] == '!' || t[p - 2] == '?'))
            return p;
    }
    if (len <= lim) return final && len > start ? len : 0;
    for (size_t q = lim; q > start + GR_WINDOW / 2; q--)
        if (is_ws(t[q - 1])) return q;
    size_t c = lim;
    while (c > start + 1 && ((unsigned char)t[c] & 0xC0) == 0x80) c--;
    return c;
}

static void result_init(gr_result *r, gr_source src) {
    memset(r, 0, sizeof *r);
    r->source = src;
    r->blocked_by = -1;
}

void gr_result_free(gr_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n_outputs; i++) free(r->outputs[i]);
    free(r->outputs);
    for (int i = 0; i < r->n_dets; i++) free(r->dets[i].match);
    free(r->dets);
    memset(r, 0, sizeof *r);
}

static bs_status add_det(gr_result *r, gr_det_kind kind, int policy, int message,
                         const char *name, const char *text, size_t start, size_t end,
                         size_t base, gr_action action, double score, bs_error *err) {
    if (kind == GR_DET_TOPIC)
        for (int i = 0; i < r->n_dets; i++)
            if (r->dets[i].kind == GR_DET_TOPIC && r->dets[i].policy == policy &&
                strcmp(r->dets[i].name, name) == 0)
                return BS_OK;
    if (r->n_dets == r->cap_dets) {
        int cap = r->cap_dets ? r->cap_dets * 2 : 8;
        gr_detection *nd = realloc(r->dets, (size_t)cap * sizeof *nd);
        if (!nd) return bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
        r->dets = nd;
        r->cap_dets = cap;
    }
    char *m = NULL;
    if (text && !(m = strndup(text + start, end - start)))
        return bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
    r->dets[r->n_dets++] = (gr_detection){kind, policy, message, name, m,
                                          base + start, base + end, action, score};
    return BS_OK;
}

typedef struct span {
    size_t start, end;
    int idx;
} span;

static int span_longest_first(const void *a, const void *b) {
    const span *x = a, *y = b;
    size_t lx = x->end - x->start, ly = y->end - y->start;
    if (lx != ly) return lx > ly ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->idx - y->idx;
}

static int span_by_start(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Keep non-overlapping spans, longest (then first) winning; returns the
 * count kept, sorted by start. */
static int select_spans(span *v, int n) {
    qsort(v, (size_t)n, sizeof *v, span_longest_first);
    int k = 0;
    for (int i = 0; i < n; i++) {
        int clash = 0;
        for (int j = 0; j < k && !clash; j++) clash = v[i].start < v[j].end && v[j].start < v[i].end;
        if (!clash) v[k++] = v[i];
    }
    qsort(v, (size_t)k, sizeof *v, span_by_start);
    return k;
}

typedef struct cand {
    gr_det_kind kind;
    const char *name;
    gr_action action;
} cand;

/* Sensitive-information candidates of one policy in one segment: built-in
 * detectors and custom regexes, overlaps resolved, then recorded. */
static bs_status scan_sensitive(const gr_policy *p, int pi, int message, const char *seg,
                                size_t len, size_t base, pcre2_match_data *md, gr_result *r,
                                bs_error *err) {
    pii_match *pm = NULL;
    int npm = 0;
    bs_status st = BS_OK;
    if (p->pii_mask && (st = pii_scan(seg, len, p->pii_mask, &pm, &npm, err)) != BS_OK)
        return bs_wrap(err, "guardrail %s", p->name);
    span *sp = NULL;
    cand *cd = NULL;
    int ns = 0, cap = npm + 8;
    if (!(sp = malloc((size_t)cap * sizeof *sp)) || !(cd = malloc((size_t)cap * sizeof *cd))) {
        st = bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
        goto done;
    }
    for (int i = 0; i < npm; i++) {
        sp[ns] = (span){pm[i].start, pm[i].end, ns};
        cd[ns++] = (cand){GR_DET_PII, pii_type_name(pm[i].type), p->pii_action[pm[i].type]};
    }
    for (int k = 0; k < p->n_regexes; k++) {
        char what[200];
        snprintf(what, sizeof what, "guardrail %s: regex %s", p->name, p->regexes[k].name);
        size_t pos = 0, s, e;
        int rc;
        while ((rc = pii_regex_find(p->regexes[k].re, md, seg, len, &pos, &s, &e, what, err)) == 1) {
            if (ns == cap) {
                cap *= 2;
                span *nsp = realloc(sp, (size_t)cap * sizeof *sp);
                if (nsp) sp = nsp;
                cand *ncd = nsp ? realloc(cd, (size_t)cap * sizeof *cd) : NULL;
                if (!ncd) {
                    st = bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
                    goto done;
                }
                cd = ncd;
            }
            sp[ns] = (span){s, e, ns};
            cd[ns++] = (cand){GR_DET_REGEX, p->regexes[k].name, p->regexes[k].action};
        }
        if (rc < 0) {
            st = BS_ERANGE;
            goto done;
        }
    }
    int keep = select_spans(sp, ns);
    for (int i = 0; i < keep && st == BS_OK; i++) {
        const cand *c = &cd[sp[i].idx];
        st = add_det(r, c->kind, pi, message, c->name, seg, sp[i].start, sp[i].end, base,
                     c->action, 0, err);
    }
done:
    free(pm);
    free(sp);
    free(cd);
    return st;
}

/* Every match of a block-only pattern (words, profanity, topics). */
static bs_status scan_blocking(const pcre2_code *re, gr_det_kind kind, const char *name,
                               const gr_policy *p, int pi, int message, const char *seg,
                               size_t len, size_t base, pcre2_match_data *md, gr_result *r,
                               bs_error *err) {
    char what[200];
    snprintf(what, sizeof what, "guardrail %s: %s", p->name,
             kind == GR_DET_TOPIC ? "denied topic" : "word filter");
    size_t pos = 0, s, e;
    int rc;
    while ((rc = pii_regex_find(re, md, seg, len, &pos, &s, &e, what, err)) == 1) {
        bs_status st = add_det(r, kind, pi, message, name, seg, s, e, base, GR_ACT_BLOCK, 0, err);
        if (st != BS_OK) return st;
        if (kind == GR_DET_TOPIC) break; /* a topic is reported once */
    }
    return rc < 0 ? BS_ERANGE : BS_OK;
}

/* Evaluate one segment [s, e) of text under every applicable policy and
 * append its masked form to out. */
static bs_status eval_segment(const gr_policy *const *P, int n, gr_source src, int message,
                              const char *text, size_t s, size_t e, size_t base,
                              pcre2_match_data *md, gr_result *r, sbuf *out, bs_error *err) {
    const char *seg = text + s;
    size_t len = e - s;
    int d0 = r->n_dets;
    for (int pi = 0; pi < n; pi++) {
        const gr_policy *p = P[pi];
        if (!p->applies[src]) continue;
        bs_status st = scan_sensitive(p, pi, message, seg, len, base + s, md, r, err);
        if (st == BS_OK && p->words)
            st = scan_blocking(p->words, GR_DET_WORD, NULL, p, pi, message, seg, len, base + s, md,
                               r, err);
        if (st == BS_OK && p->profanity)
            st = scan_blocking(g_profanity_re, GR_DET_PROFANITY, NULL, p, pi, message, seg, len,
                               base + s, md, r, err);
        for (int t = 0; t < p->n_topics && st == BS_OK; t++)
            st = scan_blocking(p->topics[t].re, GR_DET_TOPIC, p->topics[t].name, p, pi, message,
                               seg, len, base + s, md, r, err);
        if (st != BS_OK) return st;
    }
    /* anonymizations of all policies compose: one more overlap pass */
    int nd = r->n_dets - d0, k = 0;
    span *sp = malloc(((size_t)nd + 1) * sizeof *sp);
    if (!sp) return bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
    for (int i = d0; i < r->n_dets; i++)
        if (r->dets[i].action == GR_ACT_ANONYMIZE)
            sp[k] = (span){r->dets[i].start - base, r->dets[i].end - base, i}, k++;
    k = select_spans(sp, k);
    size_t at = s;
    int bad = 0;
    for (int i = 0; i < k; i++) {
        bad |= sb_add(out, text + at, sp[i].start - at);
        bad |= sb_str(out, "{") | sb_str(out, r->dets[sp[i].idx].name) | sb_str(out, "}");
        at = sp[i].end;
    }
    bad |= sb_add(out, text + at, e - at);
    free(sp);
    return bad ? bs_fail(err, BS_ENOMEM, "guardrail: out of memory") : BS_OK;
}

static bs_status eval_text(const gr_policy *const *P, int n, gr_source src, int message,
                           int attack, const char *text, size_t len, gr_result *r, sbuf *out,
                           bs_error *err) {
    pcre2_match_data *md = pcre2_match_data_create(16, NULL);
    if (!md) return bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
    bs_status st = BS_OK;
    for (size_t s = 0, e; st == BS_OK && s < len; s = e) {
        e = segment_end(text, len, s, 1);
        st = eval_segment(P, n, src, message, text, s, e, 0, md, r, out, err);
    }
    if (st == BS_OK && !out->p) st = sb_add(out, "", 0) ? bs_fail(err, BS_ENOMEM, "guardrail: out of memory") : BS_OK;
    for (int pi = 0; pi < n && attack && st == BS_OK; pi++) {
        const gr_policy *p = P[pi];
        if (!p->applies[src] || !p->attack) continue;
        double keep = 1;
        for (size_t k = 0; k < N_ATTACK && st == BS_OK; k++) {
            size_t pos = 0, s0, e0;
            int rc = pii_regex_find(g_attack_re[k], md, text, len, &pos, &s0, &e0,
                                    "prompt-attack check", err);
            if (rc < 0) st = BS_ERANGE;
            if (rc == 1) keep *= 1 - attack_patterns[k].weight;
        }
        double score = 1 - keep;
        if (st == BS_OK && score > 0) {
            gr_action a = score >= p->attack_threshold ? p->attack_action : GR_ACT_NONE;
            st = add_det(r, GR_DET_PROMPT_ATTACK, pi, message, "PROMPT_ATTACK", NULL, 0, 0, 0, a,
                         score, err);
        }
    }
    pcre2_match_data_free(md);
    return st;
}

static size_t utf8_chars(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static bs_status check_length(const gr_policy *const *P, int n, size_t chars, gr_result *r,
                              bs_error *err) {
    for (int pi = 0; pi < n; pi++)
        if (P[pi]->applies[GR_INPUT] && P[pi]->max_input_chars &&
            chars > (size_t)P[pi]->max_input_chars) {
            bs_status st = add_det(r, GR_DET_LENGTH, pi, -1, "MAX_INPUT_CHARS", NULL, 0, 0, 0,
                                   GR_ACT_BLOCK, (double)chars, err);
            if (st != BS_OK) return st;
        }
    return BS_OK;
}

static bs_status add_output(gr_result *r, char *text, bs_error *err) {
    char **no = realloc(r->outputs, ((size_t)r->n_outputs + 1) * sizeof *no);
    if (!no) {
        free(text);
        return bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
    }
    r->outputs = no;
    r->outputs[r->n_outputs++] = text;
    return BS_OK;
}

/* Decide the overall action; a block replaces the outputs by the first
 * blocking policy's message. */
static bs_status finalize(const gr_policy *const *P, gr_result *r, bs_error *err) {
    for (int i = 0; i < r->n_dets; i++) {
        const gr_detection *d = &r->dets[i];
        if (d->action == GR_ACT_BLOCK && (r->blocked_by < 0 || d->policy < r->blocked_by))
            r->blocked_by = d->policy;
        if (d->action != GR_ACT_NONE) r->intervened = 1;
    }
    if (r->blocked_by < 0) return BS_OK;
    r->blocked = 1;
    for (int i = 0; i < r->n_outputs; i++) free(r->outputs[i]);
    r->n_outputs = 0;
    char *m = strdup(P[r->blocked_by]->blocked_message[r->source]);
    if (!m) return bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
    return add_output(r, m, err);
}

bs_status guardrail_apply(const gr_policy *const *policies, int n, gr_source src,
                          const char *text, size_t len, gr_result *out, bs_error *err) {
    result_init(out, src);
    sbuf masked = {0};
    bs_status st = src == GR_INPUT ? check_length(policies, n, utf8_chars(text, len), out, err)
                                   : BS_OK;
    if (st == BS_OK)
        st = eval_text(policies, n, src, -1, src == GR_INPUT, text, len, out, &masked, err);
    if (st != BS_OK) {
        free(masked.p);
        return st;
    }
    if ((st = add_output(out, masked.p, err)) != BS_OK) return st;
    return finalize(policies, out, err);
}

/* ---- OpenAI messages --------------------------------------------------- */

static int checked_role(const json_t *msg) {
    const char *role = json_string_value(json_object_get(msg, "role"));
    return role && (strcmp(role, "user") == 0 || strcmp(role, "system") == 0 ||
                    strcmp(role, "developer") == 0);
}

/* The json string holders of a message's checked text: the content string
 * itself (parent = message, key "content") or each text part. */
typedef bs_status (*text_fn)(json_t *holder, const char *key, int message, int user, void *ctx,
                             bs_error *err);

static bs_status each_text(json_t *messages, text_fn fn, void *ctx, bs_error *err) {
    size_t i, k;
    json_t *m, *part;
    json_array_foreach(messages, i, m) {
        if (!json_is_object(m) || !checked_role(m)) continue;
        int user = strcmp(json_string_value(json_object_get(m, "role")), "user") == 0;
        json_t *c = json_object_get(m, "content");
        bs_status st = BS_OK;
        if (json_is_string(c)) st = fn(m, "content", (int)i, user, ctx, err);
        else if (json_is_array(c))
            json_array_foreach(c, k, part) {
                const char *type = json_string_value(json_object_get(part, "type"));
                if (st == BS_OK && type && strcmp(type, "text") == 0 &&
                    json_is_string(json_object_get(part, "text")))
                    st = fn(part, "text", (int)i, user, ctx, err);
            }
        if (st != BS_OK) return st;
    }
    return BS_OK;
}

static bs_status count_chars(json_t *holder, const char *key, int message, int user, void *ctx,
                             bs_error *err) {
    (void)message, (void)user, (void)err;
    const json_t *s = json_object_get(holder, key);
    *(size_t *)ctx += utf8_chars(json_string_value(s), json_string_length(s));
    return BS_OK;
}

typedef struct msg_ctx {
    const gr_policy *const *P;
    int n;
    gr_result *r;
} msg_ctx;

static bs_status mask_text(json_t *holder, const char *key, int message, int user, void *ctx,
                           bs_error *err) {
    msg_ctx *c = ctx;
    const json_t *s = json_object_get(holder, key);
    sbuf masked = {0};
    bs_status st = eval_text(c->P, c->n, GR_INPUT, message, user, json_string_value(s),
                             json_string_length(s), c->r, &masked, err);
    if (st == BS_OK && json_object_set_new(holder, key, json_stringn(masked.p, masked.len)))
        st = bs_fail(err, BS_ENOMEM, "guardrail: messages[%d]: cannot store masked text", message);
    if (st != BS_OK) {
        free(masked.p);
        return st;
    }
    return add_output(c->r, masked.p, err);
}

bs_status guardrail_apply_messages(const gr_policy *const *policies, int n, const json_t *messages,
                                   json_t **masked, gr_result *out, bs_error *err) {
    result_init(out, GR_INPUT);
    *masked = NULL;
    if (!json_is_array(messages))
        return bs_fail(err, BS_EINVAL, "guardrail: messages: expected an array");
    json_t *copy = json_deep_copy(messages);
    if (!copy) return bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
    size_t chars = 0;
    msg_ctx ctx = {policies, n, out};
    bs_status st = each_text(copy, count_chars, &chars, err);
    if (st == BS_OK) st = check_length(policies, n, chars, out, err);
    if (st == BS_OK) st = each_text(copy, mask_text, &ctx, err);
    if (st == BS_OK) st = finalize(policies, out, err);
    if (st != BS_OK || out->blocked) {
        json_decref(copy);
        return st;
    }
    *masked = copy;
    return BS_OK;
}

/* ---- result JSON ------------------------------------------------------- */

static const char *action_word(gr_action a) {
    return a == GR_ACT_BLOCK ? "BLOCKED" : a == GR_ACT_ANONYMIZE ? "ANONYMIZED" : "NONE";
}

static const char *confidence(double score) {
    return score >= 0.7 ? "HIGH" : score >= 0.35 ? "MEDIUM" : score > 0 ? "LOW" : "NONE";
}

/* Append item to obj[section][list], creating both on first use. */
static void put(json_t *obj, const char *section, const char *list, json_t *item) {
    json_t *sec = json_object_get(obj, section);
    if (!sec) json_object_set_new(obj, section, sec = json_object());
    if (!list) {
        json_object_update(sec, item);
        json_decref(item);
        return;
    }
    json_t *arr = json_object_get(sec, list);
    if (!arr) json_object_set_new(sec, list, arr = json_array());
    json_array_append_new(arr, item);
}

json_t *gr_result_json(const gr_result *r, const gr_policy *const *policies, int n) {
    json_t *root = json_object(), *outputs = json_array(), *assess = json_array();
    json_object_set_new(root, "action", json_string(r->intervened ? "GUARDRAIL_INTERVENED" : "NONE"));
    for (int i = 0; r->intervened && i < r->n_outputs; i++)
        json_array_append_new(outputs, json_pack("{s:s}", "text", r->outputs[i]));
    json_object_set_new(root, "outputs", outputs);
    for (int pi = 0; pi < n; pi++) {
        if (!policies[pi]->applies[r->source]) continue;
        json_t *a = json_object();
        for (int i = 0; i < r->n_dets; i++) {
            const gr_detection *d = &r->dets[i];
            if (d->policy != pi) continue;
            const char *act = action_word(d->action);
            switch (d->kind) {
            case GR_DET_PII:
                put(a, "sensitiveInformationPolicy", "piiEntities",
                    json_pack("{s:s,s:s,s:s}", "type", d->name, "match", d->match, "action", act));
                break;
            case GR_DET_REGEX:
                put(a, "sensitiveInformationPolicy", "regexes",
                    json_pack("{s:s,s:s,s:s}", "name", d->name, "match", d->match, "action", act));
                break;
            case GR_DET_WORD:
                put(a, "wordPolicy", "customWords",
                    json_pack("{s:s,s:s}", "match", d->match, "action", act));
                break;
            case GR_DET_PROFANITY:
                put(a, "wordPolicy", "managedWordLists",
                    json_pack("{s:s,s:s,s:s}", "match", d->match, "type", "PROFANITY", "action",
                              act));
                break;
            case GR_DET_TOPIC:
                put(a, "topicPolicy", "topics",
                    json_pack("{s:s,s:s,s:s}", "name", d->name, "type", "DENY", "action", act));
                break;
            case GR_DET_PROMPT_ATTACK:
                put(a, "contentPolicy", "filters",
                    json_pack("{s:s,s:s,s:s}", "type", "PROMPT_ATTACK", "confidence",
                              confidence(d->score), "action", act));
                break;
            case GR_DET_LENGTH:
                put(a, "lengthPolicy", NULL,
                    json_pack("{s:I,s:I,s:s}", "maxInputChars",
                              (json_int_t)policies[pi]->max_input_chars, "inputChars",
                              (json_int_t)d->score, "action", act));
                break;
            }
        }
        json_array_append_new(assess, a);
    }
    json_object_set_new(root, "assessments", assess);
    return root;
}

/* ---- streaming --------------------------------------------------------- */

struct gr_stream {
    const gr_policy *const *P;
    int n;
    sbuf pending;    /* text not yet evaluated, starting at stream offset base */
    size_t base;
    sbuf emitted;    /* everything handed out so far */
    gr_result r;
    pcre2_match_data *md;
    int blocked;
};

bs_status gr_stream_open(const gr_policy *const *policies, int n, gr_stream **out, bs_error *err) {
    gr_stream *s = calloc(1, sizeof *s);
    if (!s || !(s->md = pcre2_match_data_create(16, NULL))) {
        free(s);
        return bs_fail(err, BS_ENOMEM, "guardrail stream: out of memory");
    }
    s->P = policies;
    s->n = n;
    result_init(&s->r, GR_OUTPUT);
    *out = s;
    return BS_OK;
}

void gr_stream_free(gr_stream *s) {
    if (!s) return;
    free(s->pending.p);
    free(s->emitted.p);
    gr_result_free(&s->r);
    pcre2_match_data_free(s->md);
    free(s);
}

/* Evaluate every segment that is decided; final: also the tail. */
static bs_status stream_drain(gr_stream *s, int final, char **emit, size_t *emit_len,
                              int *blocked, bs_error *err) {
    sbuf now = {0};
    bs_status st = BS_OK;
    size_t done = 0, e;
    while (!s->blocked && st == BS_OK && done < s->pending.len &&
           (e = segment_end(s->pending.p, s->pending.len, done, final)) != 0) {
        size_t before = now.len;
        st = eval_segment(s->P, s->n, GR_OUTPUT, -1, s->pending.p, done, e, s->base, s->md, &s->r,
                          &now, err);
        for (int i = 0; st == BS_OK && i < s->r.n_dets; i++)
            if (s->r.dets[i].action == GR_ACT_BLOCK) s->blocked = 1;
        if (s->blocked) now.len = before; /* the blocking segment is never sent */
        done = e;
    }
    if (st == BS_OK && sb_add(&now, "", 0)) st = bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
    if (st == BS_OK && sb_add(&s->emitted, now.p, now.len))
        st = bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
    if (st != BS_OK) {
        free(now.p);
        s->blocked = 1; /* fail closed */
        *blocked = 1;
        return st;
    }
    memmove(s->pending.p, s->pending.p + done, s->pending.len - done);
    s->pending.len -= done;
    s->base += done;
    *emit = now.p;
    *emit_len = now.len;
    *blocked = s->blocked;
    return BS_OK;
}

bs_status gr_stream_push(gr_stream *s, const char *delta, size_t len, char **emit,
                         size_t *emit_len, int *blocked, bs_error *err) {
    *emit = NULL;
    *emit_len = 0;
    if (!s->blocked && sb_add(&s->pending, delta, len)) {
        *blocked = 1;
        return bs_fail(err, BS_ENOMEM, "guardrail stream: out of memory");
    }
    return stream_drain(s, 0, emit, emit_len, blocked, err);
}

bs_status gr_stream_finish(gr_stream *s, char **emit, size_t *emit_len, int *blocked,
                           bs_error *err) {
    *emit = NULL;
    *emit_len = 0;
    return stream_drain(s, 1, emit, emit_len, blocked, err);
}

bs_status gr_stream_result(const gr_stream *s, gr_result *out, bs_error *err) {
    result_init(out, GR_OUTPUT);
    for (int i = 0; i < s->r.n_dets; i++) {
        const gr_detection *d = &s->r.dets[i];
        if (out->n_dets == out->cap_dets) {
            int cap = out->cap_dets ? out->cap_dets * 2 : 8;
            gr_detection *nd = realloc(out->dets, (size_t)cap * sizeof *nd);
            if (!nd) return bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
            out->dets = nd;
            out->cap_dets = cap;
        }
        out->dets[out->n_dets] = *d;
        if (d->match && !(out->dets[out->n_dets].match = strdup(d->match)))
            return bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
        out->n_dets++;
    }
    char *text = strdup(s->emitted.p ? s->emitted.p : "");
    if (!text) return bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
    bs_status st = add_output(out, text, err);
    return st == BS_OK ? finalize(s->P, out, err) : st;
}
