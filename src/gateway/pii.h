/* gateway/pii.h — detectors for sensitive information (PII and secrets).
 *
 * Each detector is a bounded PCRE2 candidate pattern followed by a validator,
 * Presidio-style, so that a bare digit run is not reported as a card or a
 * phone number: Luhn and issuer prefixes for cards, mod-97 and the
 * per-country length for IBANs, the SSA invalidation rules for SSNs, octet
 * ranges and inet_pton for IP addresses, a TLD check for e-mail addresses.
 * Entity names follow Amazon Bedrock Guardrails, plus URL_WITH_CREDENTIALS
 * (a basalt extension).  The module owns the built-in patterns (compiled
 * once, JIT where available) and the shared PCRE2 match limits that every
 * guardrail regex runs under. */
#ifndef BASALT_GATEWAY_PII_H
#define BASALT_GATEWAY_PII_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <stddef.h>

#include "base/error.h"

typedef enum {
    PII_EMAIL,
    PII_PHONE,
    PII_CREDIT_DEBIT_CARD_NUMBER,
    PII_INTERNATIONAL_BANK_ACCOUNT_NUMBER,
    PII_US_SOCIAL_SECURITY_NUMBER,
    PII_IP_ADDRESS,
    PII_AWS_ACCESS_KEY,
    PII_URL_WITH_CREDENTIALS,
    PII_N_TYPES
} pii_type;

/* Bedrock's name ("EMAIL", ...); pii_type_from_name returns -1 when unknown.
 * pii_known_names is "EMAIL, PHONE, ..." for error messages. */
const char *pii_type_name(pii_type t);
int pii_type_from_name(const char *name);
const char *pii_known_names(void);

typedef struct pii_match {
    pii_type type;
    size_t start, end; /* byte offsets into the scanned text, end exclusive */
} pii_match;

/* Find the entities of the types whose bit (1u << type) is set in mask.
 * Candidates of one type do not overlap each other; candidates of different
 * types may (the caller resolves).  *out is malloc'd (NULL when none).
 * Fails with BS_ERANGE when a pattern hits the match limit. */
bs_status pii_scan(const char *text, size_t len, unsigned mask, pii_match **out, int *n_out,
                   bs_error *err);

/* Validators, exposed for tests and for reuse; each takes the candidate as
 * written (separators included) and returns 1 when valid. */
int pii_luhn_ok(const char *s, size_t len);           /* digits, spaces, dashes */
int pii_card_ok(const char *s, size_t len);           /* 13-19 digits, IIN, Luhn */
int pii_iban_ok(const char *s, size_t len);           /* with or without spaces */
int pii_ssn_ok(const char *s, size_t len);            /* ddd-dd-dddd or with spaces */
int pii_ipv4_ok(const char *s, size_t len);
int pii_ipv6_ok(const char *s, size_t len);
int pii_email_ok(const char *s, size_t len);

/* Regex execution shared by all guardrail patterns.  pii_regex_compile
 * compiles with UTF (invalid UTF-8 in the subject tolerated) and JIT;
 * on failure err names `what` with PCRE2's message and offset.
 * pii_regex_find finds the next non-empty match at or after *pos and moves
 * *pos past it; returns 1 (found, [*start,*end)), 0 (no more), or -1 with
 * err set to BS_ERANGE naming `what` when the match or depth limit is hit:
 * callers fail closed rather than let an expensive pattern hang a request. */
#define PII_MATCH_LIMIT 1000000u
#define PII_DEPTH_LIMIT 10000u

bs_status pii_regex_compile(const char *pattern, unsigned extra_options, const char *what,
                            pcre2_code **out, bs_error *err);
int pii_regex_find(const pcre2_code *re, pcre2_match_data *md, const char *text, size_t len,
                   size_t *pos, size_t *start, size_t *end, const char *what, bs_error *err);

#endif
