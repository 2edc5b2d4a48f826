#include "test.h"

#include <sys/stat.h>

int test_failed_;
const char *test_skip_;
int test_pass_count_, test_fail_count_, test_skip_count_;

void test_run_(const char *name, void (*fn)(void)) {
    test_failed_ = 0;
    test_skip_ = NULL;
    fn();
    if (test_failed_) {
        printf("FAIL %s\n", name);
        test_fail_count_++;
    } else if (test_skip_) {
        printf("SKIP %s: %s\n", name, test_skip_);
        test_skip_count_++;
    } else {
        printf("PASS %s\n", name);
        test_pass_count_++;
    }
    fflush(stdout);
}

int test_summary_(const char *binary) {
    fprintf(stderr, "%s: %d passed, %d failed, %d skipped\n", binary, test_pass_count_,
            test_fail_count_, test_skip_count_);
    return test_fail_count_ ? 1 : 0;
}

const char *test_shared_dir(void) {
    static char path[4096];
    const char *env = getenv("BASALT_SHARED");
    const char *candidates[] = {env, "../shared", NULL};
    for (int i = 0; candidates[i] || i == 0; i++) {
        if (!candidates[i]) continue;
        struct stat st;
        snprintf(path, sizeof path, "%s/fixtures", candidates[i]);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            snprintf(path, sizeof path, "%s", candidates[i]);
            return path;
        }
    }
    return NULL;
}
