/* gateway/pii.c — candidate patterns, validators and bounded regex execution
 * for the sensitive-information detectors (see pii.h). */
#include "gateway/pii.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const type_names[PII_N_TYPES] = {
    "EMAIL",
    "PHONE",
    "CREDIT_DEBIT_CARD_NUMBER",
    "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
    "US_SOCIAL_SECURITY_NUMBER",
    "IP_ADDRESS",
    "AWS_ACCESS_KEY",
    "URL_WITH_CREDENTIALS",
};

const char *pii_type_name(pii_type t) { return t < PII_N_TYPES ? type_names[t] : "?"; }

int pii_type_from_name(const char *name) {
    for (int i = 0; i < PII_N_TYPES; i++)
        if (strcmp(name, type_names[i]) == 0) return i;
    return -1;
}

const char *pii_known_names(void) {
    return "EMAIL, PHONE, CREDIT_DEBIT_CARD_NUMBER, INTERNATIONAL_BANK_ACCOUNT_NUMBER, "
           "US_SOCIAL_SECURITY_NUMBER, IP_ADDRESS, AWS_ACCESS_KEY, URL_WITH_CREDENTIALS";
}

/* ---- bounded regex execution ------------------------------------------ */

static pcre2_match_context *g_mctx;
static pthread_once_t g_mctx_once = PTHREAD_ONCE_INIT;

static void mctx_init(void) {
    g_mctx = pcre2_match_context_create(NULL);
    if (!g_mctx) return;
    pcre2_set_match_limit(g_mctx, PII_MATCH_LIMIT);
    pcre2_set_depth_limit(g_mctx, PII_DEPTH_LIMIT);
}

bs_status pii_regex_compile(const char *pattern, unsigned extra_options, const char *what,
                            pcre2_code **out, bs_error *err) {
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | extra_options, &code,
                                   &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return bs_fail(err, BS_EINVAL, "%s: %s at offset %zu", what, (const char *)msg,
                       (size_t)off);
    }
    /* JIT is an optimization: without it (unsupported CPU) the interpreter
     * runs the same pattern under the same limits. */
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    *out = re;
    return BS_OK;
}

int pii_regex_find(const pcre2_code *re, pcre2_match_data *md, const char *text, size_t len,
                   size_t *pos, size_t *start, size_t *end, const char *what, bs_error *err) {
    pthread_once(&g_mctx_once, mctx_init);
    while (*pos <= len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)text, len, *pos, 0, md, g_mctx);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            bs_fail(err, BS_ERANGE, "%s: regex execution stopped (%s); text rejected", what,
                    (const char *)msg);
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] > ov[0]) {
            *start = ov[0];
            *end = ov[1];
            *pos = ov[1];
            return 1;
        }
        /* an empty match reports nothing; step past it (a whole UTF-8
         * character, so the next start is not inside one) */
        size_t p = ov[0] + 1;
        while (p < len && ((unsigned char)text[p] & 0xC0) == 0x80) p++;
        *pos = p;
    }
    return 0;
}

/* ---- validators -------------------------------------------------------- */

static size_t digits_only(const char *s, size_t len, char *buf, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (isdigit((unsigned char)s[i])) {
            if (n == cap) return cap + 1;
            buf[n++] = s[i];
        }
    }
    return n;
}

int pii_luhn_ok(const char *s, size_t len) {
    int sum = 0, dbl = 0, n = 0;
    for (size_t i = len; i-- > 0;) {
        if (s[i] == ' ' || s[i] == '-') continue;
        if (!isdigit((unsigned char)s[i])) return 0;
        int d = s[i] - '0';
        if (dbl && (d *= 2) > 9) d -= 9;
        sum += d;
        dbl = !dbl;
        n++;
    }
    return n > 0 && sum % 10 == 0;
}

/* Issuer identification number prefixes of the major networks: Visa 4;
 * Mastercard 51-55 and 2221-2720; Amex 34, 37; Discover 6011, 644-649, 65;
 * JCB 3528-3589; Diners 300-305, 36, 38, 39; UnionPay 62; Maestro 50,
 * 56-58, 67. */
static int iin_ok(const char *d) {
    int p2 = (d[0] - '0') * 10 + (d[1] - '0');
    int p3 = p2 * 10 + (d[2] - '0');
    int p4 = p3 * 10 + (d[3] - '0');
    if (d[0] == '4') return 1;
    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return 1;
    if (p2 == 34 || p2 == 37 || p2 == 36 || p2 == 38 || p2 == 39) return 1;
    if (p4 == 6011 || (p3 >= 644 && p3 <= 649) || p2 == 65) return 1;
    if (p4 >= 3528 && p4 <= 3589) return 1;
    if (p3 >= 300 && p3 <= 305) return 1;
    if (p2 == 62 || p2 == 50 || (p2 >= 56 && p2 <= 58) || p2 == 67) return 1;
    return 0;
}

int pii_card_ok(const char *s, size_t len) {
    char d[20];
    size_t n = digits_only(s, len, d, sizeof d);
    return n >= 13 && n <= 19 && iin_ok(d) && pii_luhn_ok(s, len);
}

/* IBAN lengths per country (ISO 13616 registry). */
static const struct {
    char cc[3];
    unsigned char len;
} iban_lengths[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16},
    {"BG", 22}, {"BH", 22}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28},
    {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24},
    {"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18},
    {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23},
    {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32},
    {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MD", 24}, {"ME", 22},
    {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24},
    {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24},
    {"SC", 31}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28},
    {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

static int iban_length(const char *cc) {
    for (size_t i = 0; i < sizeof iban_lengths / sizeof iban_lengths[0]; i++)
        if (cc[0] == iban_lengths[i].cc[0] && cc[1] == iban_lengths[i].cc[1])
            return iban_lengths[i].len;
    return 0;
}

int pii_iban_ok(const char *s, size_t len) {
    char c[40];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') continue;
        if (!isupper((unsigned char)s[i]) && !isdigit((unsigned char)s[i])) return 0;
        if (n == sizeof c) return 0;
        c[n++] = s[i];
    }
    if (n < 5 || !isupper((unsigned char)c[0]) || !isupper((unsigned char)c[1]) ||
        !isdigit((unsigned char)c[2]) || !isdigit((unsigned char)c[3]))
        return 0;
    if ((size_t)iban_length(c) != n) return 0;
    /* move the first four characters to the end, letters as 10..35, mod 97 */
    unsigned rem = 0;
    for (size_t k = 0; k < n; k++) {
        char ch = c[(k + 4) % n];
        if (isdigit((unsigned char)ch))
            rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
        else
            rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
    }
    return rem == 1;
}

/* The SSA never issues area 000, 666 or 9xx, group 00 or serial 0000;
 * Presidio also drops all-same digits and the numbers published as
 * examples (123-45-6789, 987-65-432x, Woolworth's 078-05-1120). */
int pii_ssn_ok(const char *s, size_t len) {
    char d[10];
    if (digits_only(s, len, d, 9) != 9) return 0;
    if (len == 11 && s[3] != s[6]) return 0; /* mixed separators */
    if (memcmp(d, "000", 3) == 0 || memcmp(d, "666", 3) == 0 || d[0] == '9') return 0;
    if (memcmp(d + 3, "00", 2) == 0 || memcmp(d + 5, "0000", 4) == 0) return 0;
    int same = 1;
    for (int i = 1; i < 9; i++) same &= d[i] == d[0];
    if (same) return 0;
    if (memcmp(d, "123456789", 9) == 0 || memcmp(d, "98765432", 8) == 0 ||
        memcmp(d, "078051120", 9) == 0)
        return 0;
    return 1;
}

int pii_ipv4_ok(const char *s, size_t len) {
    int octets = 0;
    size_t i = 0;
    while (i < len) {
        unsigned v = 0;
        size_t k = 0;
        while (i < len && isdigit((unsigned char)s[i]) && k < 4) v = v * 10 + (unsigned)(s[i++] - '0'), k++;
        if (k == 0 || k > 3 || v > 255) return 0;
        octets++;
        if (i < len && s[i++] != '.') return 0;
        if (i == len && s[len - 1] == '.') return 0;
    }
    return octets == 4;
}

int pii_ipv6_ok(const char *s, size_t len) {
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char addr[16];
    if (len >= sizeof buf) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    int hex = 0;
    for (size_t i = 0; i < len; i++) hex += isxdigit((unsigned char)s[i]) != 0;
    return hex > 0 && inet_pton(AF_INET6, buf, addr) == 1;
}

/* Generic top-level domains accepted besides any two-letter country code. */
static const char *const generic_tlds[] = {
    "com", "net", "org", "edu", "gov", "mil", "int", "info", "biz", "name", "pro", "aero",
    "coop", "museum", "mobi", "asia", "tel", "travel", "jobs", "app", "dev", "cloud", "online",
    "site", "tech", "store", "blog", "shop", "xyz", "top", "club", "email", "page", "systems",
    "solutions", "company", "network", "digital", "agency", "media", "global", "world", "io",
};

int pii_email_ok(const char *s, size_t len) {
    const char *at = memchr(s, '@', len);
    if (!at || at == s) return 0;
    const char *local = s, *dom = at + 1, *e = s + len;
    if (local[0] == '.' || at[-1] == '.') return 0;
    for (const char *p = local; p + 1 < at; p++)
        if (p[0] == '.' && p[1] == '.') return 0;
    const char *dot = NULL;
    for (const char *p = dom; p < e; p++)
        if (*p == '.') dot = p;
    if (!dot) return 0;
    const char *tld = dot + 1;
    size_t tl = (size_t)(e - tld);
    if (tl == 2) return isalpha((unsigned char)tld[0]) && isalpha((unsigned char)tld[1]);
    for (size_t i = 0; i < sizeof generic_tlds / sizeof generic_tlds[0]; i++)
        if (strlen(generic_tlds[i]) == tl && strncasecmp(generic_tlds[i], tld, tl) == 0) return 1;
    return 0;
}

/* ---- candidate patterns ------------------------------------------------ */

/* Phone formats.  International numbers carry +CC and 8-15 digits (E.164);
 * North American ones need separators and NANP area/exchange digits 2-9;
 * European national ones start with a trunk 0 and have separators — so a
 * bare digit run (an order number) is never a phone number. */
static int phone_intl_ok(const char *s, size_t len) {
    char d[17];
    size_t n = digits_only(s, len, d, 16);
    return n >= 8 && n <= 15;
}

static int phone_nanp_ok(const char *s, size_t len) {
    char d[12];
    size_t n = digits_only(s, len, d, 11);
    return n == 10 && d[0] >= '2' && d[3] >= '2';
}

static int phone_eu_ok(const char *s, size_t len) {
    char d[14];
    size_t n = digits_only(s, len, d, 13);
    return n >= 9 && n <= 12 && d[1] != '0';
}

static int always_ok(const char *s, size_t len) {
    (void)s;
    (void)len;
    return 1;
}

static const struct detector {
    pii_type type;
    const char *pattern;
    int (*valid)(const char *s, size_t len);
} detectors[] = {
    {PII_EMAIL,
     "(?<![\\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
     "[A-Za-z0-9])?\\.){1,8}[A-Za-z]{2,24}(?![\\w-]|\\.\\w)",
     pii_email_ok},
    {PII_PHONE,
     "(?<![\\w+])\\+[1-9]\\d{0,2}[ .-]?(?:\\(\\d{1,4}\\)[ .-]?)?\\d{1,4}(?:[ .-]?\\d{1,4}){1,5}"
     "(?!\\w|[-.]\\d)",
     phone_intl_ok},
    {PII_PHONE, "(?<![\\w+(-])(?:\\(\\d{3}\\) ?|\\d{3}[-. ])\\d{3}[-. ]\\d{4}(?!\\w|[-.]\\d)",
     phone_nanp_ok},
    {PII_PHONE, "(?<![\\w+-])0\\d{1,4}(?:[ /-]\\d{2,8}){1,4}(?!\\w|[-.]\\d)", phone_eu_ok},
    {PII_CREDIT_DEBIT_CARD_NUMBER, "(?<![\\w+-])\\d(?:[ -]?\\d){12,18}(?!\\w|[ -]\\d)",
     pii_card_ok},
    {PII_INTERNATIONAL_BANK_ACCOUNT_NUMBER,
     "(?<![\\w])[A-Z]{2}\\d{2}(?: ?[A-Z0-9]{4})*(?: ?[A-Z0-9]{1,4})(?![\\w])", pii_iban_ok},
    {PII_US_SOCIAL_SECURITY_NUMBER, "(?<![\\w-])\\d{3}([- ])\\d{2}\\1\\d{4}(?!\\w|[-.]\\d)",
     pii_ssn_ok},
    {PII_IP_ADDRESS, "(?<![\\w.])(?:\\d{1,3}\\.){3}\\d{1,3}(?!\\w|\\.\\d)", pii_ipv4_ok},
    {PII_IP_ADDRESS,
     "(?<![\\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\\d{1,3}(?:\\.\\d{1,3}){3})?"
     "(?![\\w:])",
     pii_ipv6_ok},
    {PII_AWS_ACCESS_KEY, "(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z2-7]{16}(?![A-Za-z0-9])", always_ok},
    {PII_URL_WITH_CREDENTIALS,
     "(?<![\\w+.-])[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\\s:/@]+:[^\\s/@]+@[A-Za-z0-9.-]+"
     "(?::\\d{1,5})?",
     always_ok},
};
#define N_DETECTORS (sizeof detectors / sizeof detectors[0])

static pcre2_code *g_detector_re[N_DETECTORS];
static bs_error g_detector_err;
static pthread_once_t g_detector_once = PTHREAD_ONCE_INIT;

static void detectors_init(void) {
    for (size_t i = 0; i < N_DETECTORS; i++)
        if (pii_regex_compile(detectors[i].pattern, 0, pii_type_name(detectors[i].type),
                              &g_detector_re[i], &g_detector_err) != BS_OK)
            return;
    g_detector_err.status = BS_OK;
}

bs_status pii_scan(const char *text, size_t len, unsigned mask, pii_match **out, int *n_out,
                   bs_error *err) {
    *out = NULL;
    *n_out = 0;
    pthread_once(&g_detector_once, detectors_init);
    if (g_detector_err.status != BS_OK)
        return bs_fail(err, BS_EUNSUPPORTED, "built-in PII pattern %s", g_detector_err.msg);
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    if (!md) return bs_fail(err, BS_ENOMEM, "PII scan: out of memory");
    pii_match *v = NULL;
    int n = 0, cap = 0;
    bs_status st = BS_OK;
    for (size_t i = 0; i < N_DETECTORS && st == BS_OK; i++) {
        if (!(mask & (1u << detectors[i].type))) continue;
        size_t pos = 0, s, e;
        int rc;
        while ((rc = pii_regex_find(g_detector_re[i], md, text, len, &pos, &s, &e,
                                    pii_type_name(detectors[i].type), err)) == 1) {
            if (!detectors[i].valid(text + s, e - s)) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                pii_match *nv = realloc(v, (size_t)cap * sizeof *v);
                if (!nv) {
                    st = bs_fail(err, BS_ENOMEM, "PII scan: out of memory");
                    break;
                }
                v = nv;
            }
            v[n++] = (pii_match){detectors[i].type, s, e};
        }
        if (rc < 0) st = BS_ERANGE;
    }
    pcre2_match_data_free(md);
    if (st != BS_OK) {
        free(v);
        return st;
    }
    *out = v;
    *n_out = n;
    return BS_OK;
}
