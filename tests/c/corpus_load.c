/*
 * corpus_load: feeds hostile files to the C ABI under a memory limit (tests/ffi.rs).
 *
 *   corpus_load LIMIT_MB ITEM...
 *
 * The process first limits its address space to LIMIT_MB (setrlimit RLIMIT_AS), then for each
 * ITEM prints "ITEM<TAB>status<TAB>message" where ITEM is
 *   load:PATH    senet_model_load of a seresnet18 model with 10 classes,
 *   mem:PATH     the file read into memory, then senet_preprocess_memory,
 *   file:PATH    senet_preprocess_file,
 *   create:N     senet_model_create("seresnet18", N) (and free).
 * It exits 0 when every call returned (whatever its status); an abort or a signal inside the
 * library ends it otherwise, which is what the test looks for.
 */
#define _POSIX_C_SOURCE 200809L
#include <senet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0, got;
    if (f == NULL) return NULL;
    do {
        if (n == cap) {
            unsigned char *bigger = realloc(buf, cap ? 2 * cap : 65536);
            if (bigger == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = bigger;
            cap = cap ? 2 * cap : 65536;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return buf;
}

/* Prints `message` on one line (its newlines as " / ") and ends the line. */
static void print_one_line(const char *message) {
    for (; *message != '\0'; message++) {
        if (*message == '\n') {
            fputs(" / ", stdout);
        } else {
            putchar(*message);
        }
    }
    putchar('\n');
}

int main(int argc, char **argv) {
    static float image[SENET_IMAGE_VALUES];
    struct rlimit limit;
    SenetModel *model = NULL;
    int i;
    if (argc < 2) {
        fprintf(stderr, "usage: %s LIMIT_MB ITEM...\n", argv[0]);
        return 2;
    }
    limit.rlim_cur = limit.rlim_max = (rlim_t)strtoul(argv[1], NULL, 10) << 20;
    if (setrlimit(RLIMIT_AS, &limit) != 0) {
        perror("setrlimit");
        return 2;
    }
    if (senet_model_create("seresnet18", 10, &model) != SENET_STATUS_OK) {
        fprintf(stderr, "senet_model_create: %s\n", senet_last_error());
        return 2;
    }
    for (i = 2; i < argc; i++) {
        const char *item = argv[i];
        SenetStatus st;
        if (strncmp(item, "load:", 5) == 0) {
            st = senet_model_load(model, item + 5);
        } else if (strncmp(item, "file:", 5) == 0) {
            st = senet_preprocess_file(item + 5, image, SENET_IMAGE_VALUES);
        } else if (strncmp(item, "mem:", 4) == 0) {
            size_t len = 0;
            unsigned char *data = read_all(item + 4, &len);
            if (data == NULL) {
                fprintf(stderr, "cannot read %s\n", item + 4);
                return 2;
            }
            st = senet_preprocess_memory(data, len, image, SENET_IMAGE_VALUES);
            free(data);
        } else if (strncmp(item, "create:", 7) == 0) {
            SenetModel *big = NULL;
            st = senet_model_create("seresnet18", (size_t)strtoull(item + 7, NULL, 10), &big);
            printf("%s\t%d\t", item, (int)st);
            print_one_line(senet_last_error()); /* before the free clears it */
            senet_model_free(big);
            continue;
        } else {
            fprintf(stderr, "unknown item %s\n", item);
            return 2;
        }
        printf("%s\t%d\t", item, (int)st);
        print_one_line(senet_last_error());
        fflush(stdout);
    }
    senet_model_free(model);
    return 0;
}
