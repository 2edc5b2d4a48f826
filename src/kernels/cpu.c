/* kernels/cpu.c — CPU feature detection and the choice of ISA table. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/isa.h"
#include "kernels/kernels.h"

static kern_features features;
static const kern_isa_ops *best_isa;
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static atomic_int force_reference;

static void detect(void) {
    __builtin_cpu_init();
    features = (kern_features){
        .avx2 = __builtin_cpu_supports("avx2"),
        .fma = __builtin_cpu_supports("fma"),
        .f16c = __builtin_cpu_supports("f16c"),
        .avx512f = __builtin_cpu_supports("avx512f"),
        .avx512bw = __builtin_cpu_supports("avx512bw"),
        .avx512vl = __builtin_cpu_supports("avx512vl"),
        .avx512vnni = __builtin_cpu_supports("avx512vnni"),
        .avx512bf16 = __builtin_cpu_supports("avx512bf16"),
    };
    const char *env = getenv("BASALT_KERNELS");
    if (env && strcmp(env, "ref") == 0)
        best_isa = &kern_isa_ref;
    else if (features.avx512f && features.avx512bw && features.avx512vl)
        best_isa = &kern_isa_avx512;
    else if (features.avx2 && features.fma && features.f16c)
        best_isa = &kern_isa_avx2;
    else
        best_isa = &kern_isa_ref;
}

const kern_features *kern_cpu_features(void) {
    pthread_once(&detect_once, detect);
    return &features;
}

void kern_force_reference(int on) { atomic_store(&force_reference, on != 0); }

const kern_isa_ops *kern_isa(void) {
    pthread_once(&detect_once, detect);
    return atomic_load_explicit(&force_reference, memory_order_relaxed) ? &kern_isa_ref : best_isa;
}

const char *kern_isa_name(void) { return kern_isa()->name; }
