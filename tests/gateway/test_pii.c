/* tests/gateway/test_pii.c — PII validators and detectors with values. */
#include <string.h>

#include "../support/test.h"
#include "gateway/pii.h"

#define V(fn, s) fn(s, strlen(s))

/* Types found in s, as a "TYPE@start-end;..." string in scan order. */
static const char *scan(const char *s) {
    static char buf[512];
    static bs_error err;
    pii_match *m;
    int n;
    buf[0] = '\0';
    if (pii_scan(s, strlen(s), ~0u, &m, &n, &err) != BS_OK) return err.msg;
    for (int i = 0; i < n; i++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s@%zu-%zu;",
                 pii_type_name(m[i].type), m[i].start, m[i].end);
    free(m);
    return buf;
}

static void test_cards(void) {
    CHECK(V(pii_card_ok, "4111 1111 1111 1111"));
    CHECK(V(pii_card_ok, "5500-0000-0000-0004"));
    CHECK(V(pii_card_ok, "378282246310005"));
    CHECK(!V(pii_card_ok, "4111 1111 1111 1112")); /* Luhn */
    CHECK(!V(pii_card_ok, "1111 1111 1111 1117")); /* Luhn ok, no issuer */
    CHECK(!V(pii_card_ok, "411111111111"));        /* 12 digits */
    CHECK_STR(scan("card 4111 1111 1111 1111 ok"), "CREDIT_DEBIT_CARD_NUMBER@5-24;");
    CHECK_STR(scan("card 4111 1111 1111 1112 ok"), "");
}

static void test_iban(void) {
    CHECK(V(pii_iban_ok, "DE89 3704 0044 0532 0130 00"));
    CHECK(V(pii_iban_ok, "DE89370400440532013000"));
    CHECK(V(pii_iban_ok, "GB82 WEST 1234 5698 7654 32"));
    CHECK(V(pii_iban_ok, "FR14 2004 1010 0505 0001 3M02 606"));
    CHECK(V(pii_iban_ok, "NL91 ABNA 0417 1643 00"));
    CHECK(!V(pii_iban_ok, "DE88 3704 0044 0532 0130 00"));  /* checksum */
    CHECK(!V(pii_iban_ok, "GB82 WEST 1234 5698 7654 33"));  /* checksum */
    CHECK(!V(pii_iban_ok, "DE89 3704 0044 0532 0130 0"));   /* length */
    CHECK(!V(pii_iban_ok, "NL91 ABNA 0417 1643 001"));      /* length */
    CHECK(!V(pii_iban_ok, "XX89 3704 0044 0532 0130 00"));  /* country */
    /* types may overlap here; guardrail.c keeps the longest */
    CHECK_STR(scan("pay to NL91 ABNA 0417 1643 00 OK"),
              "PHONE@17-29;INTERNATIONAL_BANK_ACCOUNT_NUMBER@7-29;");
}

static void test_ssn(void) {
    CHECK(V(pii_ssn_ok, "536-22-8745"));
    CHECK(V(pii_ssn_ok, "536 22 8745"));
    CHECK(!V(pii_ssn_ok, "078-05-1120")); /* the Woolworth example */
    CHECK(!V(pii_ssn_ok, "000-12-3456"));
    CHECK(!V(pii_ssn_ok, "666-12-3456"));
    CHECK(!V(pii_ssn_ok, "912-12-3456"));
    CHECK(!V(pii_ssn_ok, "536-00-8745"));
    CHECK(!V(pii_ssn_ok, "536-22-0000"));
    CHECK(!V(pii_ssn_ok, "123-45-6789"));
    CHECK(!V(pii_ssn_ok, "555-55-5555"));
    CHECK_STR(scan("ssn 536-22-8745."), "US_SOCIAL_SECURITY_NUMBER@4-15;");
    CHECK_STR(scan("ssn 536-22 8745."), ""); /* mixed separators */
}

static void test_ip(void) {
    CHECK(V(pii_ipv4_ok, "192.168.1.20"));
    CHECK(!V(pii_ipv4_ok, "256.1.1.1"));
    CHECK(V(pii_ipv6_ok, "2001:db8::1"));
    CHECK(V(pii_ipv6_ok, "::ffff:10.0.0.1"));
    CHECK(!V(pii_ipv6_ok, "12:30:45"));
    CHECK_STR(scan("from 10.0.0.255 and 256.1.1.1"), "IP_ADDRESS@5-15;");
    CHECK_STR(scan("host fe80::1ff:fe23:4567:890a at 12:30:45"), "IP_ADDRESS@5-29;");
}

static void test_email_phone_keys(void) {
    CHECK(V(pii_email_ok, "jane.doe@example.com"));
    CHECK(V(pii_email_ok, "x@mail.example.de"));
    CHECK(!V(pii_email_ok, "a@b.invalidtld"));
    CHECK(!V(pii_email_ok, "a..b@example.com"));
    CHECK_STR(scan("mail jane.doe@example.com."), "EMAIL@5-25;");
    CHECK_STR(scan("call +44 20 7946 0958 now"), "PHONE@5-21;");
    CHECK_STR(scan("call (212) 555-0123 now"), "PHONE@5-19;");
    CHECK_STR(scan("call 030 12345678 now"), "PHONE@5-17;");
    CHECK_STR(scan("order 5551234567 and order 123-456-7890"), ""); /* no phone shape */
    CHECK_STR(scan("key AKIAIOSFODNN7EXAMPLE"), "AWS_ACCESS_KEY@4-24;");
    CHECK_STR(scan("db postgres://admin:hunter2@db.internal:5432/app"),
              "URL_WITH_CREDENTIALS@3-44;"); /* .internal is no TLD: no EMAIL */
}

static void test_names_and_limits(void) {
    CHECK_INT(pii_type_from_name("EMAIL"), PII_EMAIL);
    CHECK_INT(pii_type_from_name("EMAILL"), -1);
    CHECK_STR(pii_type_name(PII_URL_WITH_CREDENTIALS), "URL_WITH_CREDENTIALS");
    pcre2_code *re;
    bs_error err = {0};
    CHECK_OK(pii_regex_compile("(a+)+$", 0, "test", &re, &err), &err);
    char text[4100];
    memset(text, 'a', 4096);
    text[4096] = 'b';
    text[4097] = '\0';
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    size_t pos = 0, s, e;
    CHECK_INT(pii_regex_find(re, md, text, 4097, &pos, &s, &e, "regex x", &err), -1);
    CHECK_INT(err.status, BS_ERANGE);
    CHECK(strncmp(err.msg, "regex x: regex execution stopped (", 34) == 0);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    CHECK_INT(pii_regex_compile("(ab", 0, "regexes.t.pattern", &re, &err), BS_EINVAL);
    CHECK_STR(err.msg, "regexes.t.pattern: missing closing parenthesis at offset 3");
}

int main(void) {
    RUN(test_cards);
    RUN(test_iban);
    RUN(test_ssn);
    RUN(test_ip);
    RUN(test_email_phone_keys);
    RUN(test_names_and_limits);
    TEST_MAIN_END();
}
