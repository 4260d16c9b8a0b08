/*
 * classify: the top-5 classes of image files with libsenet, as `senet predict` prints them.
 *
 *   classify MODEL CKPT CLASS_MAP [--logits OUT.f32] [--batch N] IMAGE...
 *
 * MODEL is a variant name (seresnet50, ...), CKPT a MindSpore .ckpt or .safetensors file,
 * CLASS_MAP a class map (its length gives the number of classes). Images are preprocessed with
 * MindCV's eval transform and classified in batches of N (default 16); --logits writes the raw
 * logits, float32 [images][classes], to OUT.f32.
 *
 * Build: cc -std=c99 classify.c $(pkg-config --cflags --libs senet) -o classify
 */
#include <senet.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reports a failed call with the library's message and jumps to the cleanup. */
#define CHECK(call)                                                              \
    do {                                                                         \
        SenetStatus status_ = (call);                                            \
        if (status_ != SENET_STATUS_OK) {                                        \
            fprintf(stderr, "classify: %s: %s (%s)\n", #call, senet_last_error(), \
                    senet_status_string(status_));                               \
            goto done;                                                           \
        }                                                                        \
    } while (0)

int main(int argc, char **argv) {
    int rc = 1, first_image = 4;
    size_t batch_max = 16, classes = 0, done_images = 0;
    const char *logits_path = NULL;
    SenetModel *model = NULL;
    SenetClassMap *map = NULL;
    float *input = NULL, *logits = NULL;
    FILE *logits_file = NULL;

    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL CKPT CLASS_MAP [--logits OUT.f32] [--batch N] IMAGE...\n",
                argv[0]);
        return 2;
    }
    while (first_image + 1 < argc && strncmp(argv[first_image], "--", 2) == 0) {
        if (strcmp(argv[first_image], "--logits") == 0) {
            logits_path = argv[first_image + 1];
        } else if (strcmp(argv[first_image], "--batch") == 0) {
            const char *text = argv[first_image + 1];
            char *end = NULL;
            unsigned long long v;
            errno = 0;
            v = strtoull(text, &end, 10);
            /* Digits only: strtoull would take "-1" as ULLONG_MAX and stop silently at "8x". */
            if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || v > SIZE_MAX) {
                fprintf(stderr, "classify: --batch needs a positive integer, got '%s'\n", text);
                return 2;
            }
            batch_max = (size_t)v;
        } else {
            fprintf(stderr, "classify: unknown option %s\n", argv[first_image]);
            return 2;
        }
        first_image += 2;
    }
    if (batch_max == 0 || first_image >= argc) {
        fprintf(stderr, "classify: need a positive --batch and at least one image\n");
        return 2;
    }

    CHECK(senet_classmap_load(argv[3], &map));
    CHECK(senet_classmap_len(map, &classes));
    CHECK(senet_model_create(argv[1], classes, &model));
    CHECK(senet_model_load(model, argv[2]));

    /* The buffer sizes are products of the caller's numbers: refuse what would overflow. */
    if (batch_max > SIZE_MAX / (SENET_IMAGE_VALUES * sizeof *input) ||
        batch_max > SIZE_MAX / (classes * sizeof *logits)) {
        fprintf(stderr, "classify: --batch %zu is too large\n", batch_max);
        goto done;
    }
    input = malloc(batch_max * SENET_IMAGE_VALUES * sizeof *input);
    logits = malloc(batch_max * classes * sizeof *logits);
    if (input == NULL || logits == NULL) {
        fprintf(stderr, "classify: out of memory\n");
        goto done;
    }
    if (logits_path != NULL && (logits_file = fopen(logits_path, "wb")) == NULL) {
        perror(logits_path);
        goto done;
    }

    while (first_image + (int)done_images < argc) {
        size_t n = (size_t)argc - (size_t)first_image - done_images, i, j;
        if (n > batch_max) n = batch_max;
        for (i = 0; i < n; i++) {
            CHECK(senet_preprocess_file(argv[first_image + (int)(done_images + i)],
                                        input + i * SENET_IMAGE_VALUES, SENET_IMAGE_VALUES));
        }
        CHECK(senet_model_forward(model, input, n * SENET_IMAGE_VALUES, n, SENET_IMAGE_SIZE,
                                  SENET_IMAGE_SIZE, logits, n * classes));
        for (i = 0; i < n; i++) {
            SenetClass top[5];
            size_t k = classes < 5 ? classes : 5;
            CHECK(senet_topk(logits + i * classes, classes, k, map, top, 5));
            printf("%s\n", argv[first_image + (int)(done_images + i)]);
            for (j = 0; j < k; j++) {
                printf("  %6.2f%%  %4zu  %s\n", 100.0 * top[j].probability, top[j].index,
                       top[j].name);
            }
        }
        if (logits_file != NULL && fwrite(logits, sizeof *logits, n * classes, logits_file) !=
                                       n * classes) {
            perror(logits_path);
            goto done;
        }
        done_images += n;
    }
    rc = 0;

done:
    if (logits_file != NULL && fclose(logits_file) != 0) rc = 1;
    free(input);
    free(logits);
    senet_model_free(model); /* NULL is a no-op */
    senet_classmap_free(map);
    return rc;
}
