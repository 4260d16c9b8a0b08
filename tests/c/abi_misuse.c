/*
 * Calls every function of senet.h, correctly and in each documented wrong way, and checks the
 * status and message of each call. Run by tests/ffi.rs under AddressSanitizer: any invalid
 * access or leak fails the test, as does any unexpected status.
 *
 *   abi_misuse CKPT CLASS_MAP CLASS_MAP_1000 IMAGE NOT_AN_IMAGE
 *
 * CKPT is a seresnet18 checkpoint with 10 classes; CLASS_MAP has 10 classes, CLASS_MAP_1000
 * 1000; IMAGE is a JPEG; NOT_AN_IMAGE an existing text file that is neither an image, a
 * checkpoint nor a class map.
 */
#include <senet.h>

#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks = 0, failures = 0;

/* Expects `call` to return `want`; on an error status, also that the last error is not empty. */
#define EXPECT(call, want) expect_status((call), (want), #call, __LINE__)

static void expect_status(SenetStatus got, SenetStatus want, const char *what, int line) {
    const char *msg = senet_last_error();
    checks++;
    if (got != want) {
        failures++;
        fprintf(stderr, "line %d: %s returned %d (%s: %s), expected %d (%s)\n", line, what,
                (int)got, senet_status_string(got), msg, (int)want, senet_status_string(want));
    } else if (msg == NULL || (want == SENET_STATUS_OK) != (msg[0] == '\0')) {
        failures++;
        fprintf(stderr, "line %d: %s: last error \"%s\" does not fit status %d\n", line, what,
                msg ? msg : "(null)", (int)got);
    }
}

#define EXPECT_TRUE(cond) expect_true((cond), #cond, __LINE__)

static void expect_true(int cond, const char *what, int line) {
    checks++;
    if (!cond) {
        failures++;
        fprintf(stderr, "line %d: expected %s\n", line, what);
    }
}

/* Expects the calling thread's last error to contain `part`. */
#define EXPECT_MESSAGE(part) expect_true(strstr(senet_last_error(), (part)) != NULL, part, __LINE__)

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Concurrent forward passes on one shared model. */
struct job {
    SenetModel *model;
    const float *input;
    float logits[2 * 10];
    SenetStatus status;
};

static void *run_forward(void *arg) {
    struct job *j = arg;
    int i;
    j->status = SENET_STATUS_OK;
    for (i = 0; i < 3 && j->status == SENET_STATUS_OK; i++) {
        j->status = senet_model_forward(j->model, j->input, 2 * 3 * 64 * 64, 2, 64, 64,
                                        j->logits, 2 * 10);
    }
    return NULL;
}

/* Thread-local messages: an error on this thread is not seen by another. */
static void *fail_on_thread(void *arg) {
    (void)arg;
    senet_model_free((SenetModel *)(void *)&checks); /* foreign pointer: an error here */
    return strstr(senet_last_error(), "not a live model handle") ? (void *)1 : NULL;
}

int main(int argc, char **argv) {
    const char *ckpt, *map_path, *map1000_path, *image, *not_image;
    SenetModel *model = NULL, *other = NULL, *stale;
    SenetClassMap *map = NULL, *map1000 = NULL, *stale_map;
    size_t n = 0, i, bytes_len = 0;
    const char *name = NULL;
    float *img, *img2, *small, logits[20], small_logits[2] = {0.0f, 1.0f};
    unsigned char *bytes;
    SenetClass top[3];
    struct job jobs[2];
    pthread_t threads[2];
    void *thread_ok = NULL;
    int foreign = 0;

    if (argc != 6) {
        fprintf(stderr, "usage: %s CKPT CLASS_MAP CLASS_MAP_1000 IMAGE NOT_AN_IMAGE\n", argv[0]);
        return 2;
    }
    ckpt = argv[1];
    map_path = argv[2];
    map1000_path = argv[3];
    image = argv[4];
    not_image = argv[5];

    /* Version and status strings. */
    EXPECT_TRUE(strcmp(senet_version(), SENET_VERSION) == 0);
    EXPECT_TRUE(strcmp(senet_status_string(SENET_STATUS_BUFFER_TOO_SMALL), "buffer too small") == 0);
    EXPECT_TRUE(strcmp(senet_status_string(-1), "unknown status") == 0);
    EXPECT_TRUE(strcmp(senet_status_string(SENET_STATUS_DEVICE), "device error") == 0);
    EXPECT_TRUE(strcmp(senet_status_string(SENET_STATUS_OUT_OF_MEMORY), "out of memory") == 0);
    EXPECT_TRUE(strcmp(senet_status_string(14), "unknown status") == 0);
    EXPECT_TRUE(senet_last_error() != NULL);

    /* senet_model_create */
    other = (SenetModel *)(void *)&foreign;
    EXPECT(senet_model_create("resnet50", 10, &other), SENET_STATUS_UNKNOWN_MODEL);
    EXPECT_MESSAGE("unknown model 'resnet50'");
    EXPECT_TRUE(other == NULL); /* NULL on failure */
    EXPECT(senet_model_create(NULL, 10, &model), SENET_STATUS_NULL_POINTER);
    EXPECT_MESSAGE("variant is NULL");
    EXPECT(senet_model_create("seresnet18", 10, NULL), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_model_create("seresnet18", 0, &model), SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_model_create("seresnet\xff", 10, &model), SENET_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("UTF-8");
    EXPECT(senet_model_create("seresnet18", 10, &model), SENET_STATUS_OK);
    EXPECT_TRUE(model != NULL);

    /* senet_model_num_classes */
    EXPECT(senet_model_num_classes(model, &n), SENET_STATUS_OK);
    EXPECT_TRUE(n == 10);
    EXPECT(senet_model_num_classes(NULL, &n), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_model_num_classes(model, NULL), SENET_STATUS_NULL_POINTER);

    /* No weights yet. */
    img = malloc(2 * SENET_IMAGE_VALUES * sizeof *img);
    img2 = img + SENET_IMAGE_VALUES;
    memset(img, 0, 2 * SENET_IMAGE_VALUES * sizeof *img);
    EXPECT(senet_model_forward(model, img, SENET_IMAGE_VALUES, 1, 224, 224, logits, 10),
           SENET_STATUS_NOT_LOADED);
    EXPECT_MESSAGE("senet_model_load");

    /* senet_model_load */
    EXPECT(senet_model_load(model, NULL), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_model_load(NULL, ckpt), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_model_load(model, ""), SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_model_load(model, "/nonexistent/x.ckpt"), SENET_STATUS_IO);
    EXPECT_MESSAGE("/nonexistent/x.ckpt");
    EXPECT(senet_model_load(model, not_image), SENET_STATUS_FORMAT);
    EXPECT(senet_model_create("seresnet18", 11, &other), SENET_STATUS_OK);
    EXPECT(senet_model_load(other, ckpt), SENET_STATUS_CHECKPOINT_MISMATCH);
    EXPECT_MESSAGE("classifier");
    EXPECT(senet_model_free(other), SENET_STATUS_OK);
    EXPECT(senet_model_load(model, ckpt), SENET_STATUS_OK);

    /* senet_model_set_device */
    EXPECT(senet_model_set_device(model, SENET_DEVICE_CPU, 0), SENET_STATUS_OK);
    EXPECT(senet_model_set_device(model, SENET_DEVICE_CPU, 1), SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_model_set_device(model, SENET_DEVICE_ASCEND, 0),
           SENET_STATUS_BACKEND_UNAVAILABLE);
    EXPECT_MESSAGE("CANN not found"); /* this test runs where CANN is absent */
    EXPECT(senet_model_set_device(model, SENET_DEVICE_ASCEND, -1), SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_model_set_device(model, 7, 0), SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_model_set_device(NULL, SENET_DEVICE_CPU, 0), SENET_STATUS_NULL_POINTER);

    /* senet_model_set_threads */
    EXPECT(senet_model_set_threads(model, SENET_MAX_THREADS + 1), SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_model_set_threads(NULL, 1), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_model_set_threads(model, 2), SENET_STATUS_OK);

    /* senet_preprocess_file */
    EXPECT(senet_preprocess_file(NULL, img, SENET_IMAGE_VALUES), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_preprocess_file(image, NULL, SENET_IMAGE_VALUES), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_preprocess_file(image, img, SENET_IMAGE_VALUES - 1),
           SENET_STATUS_BUFFER_TOO_SMALL);
    EXPECT_MESSAGE("150528");
    EXPECT(senet_preprocess_file("/nonexistent.jpg", img, SENET_IMAGE_VALUES), SENET_STATUS_IO);
    EXPECT(senet_preprocess_file(not_image, img, SENET_IMAGE_VALUES), SENET_STATUS_FORMAT);
    EXPECT(senet_preprocess_file(image, (float *)((char *)img + 1), SENET_IMAGE_VALUES),
           SENET_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("aligned");
    EXPECT(senet_preprocess_file(image, img, SENET_IMAGE_VALUES), SENET_STATUS_OK);

    /* senet_preprocess_memory: same values as from the file */
    bytes = read_file(image, &bytes_len);
    EXPECT_TRUE(bytes != NULL && bytes_len > 100);
    EXPECT(senet_preprocess_memory(NULL, bytes_len, img2, SENET_IMAGE_VALUES),
           SENET_STATUS_NULL_POINTER);
    EXPECT(senet_preprocess_memory(bytes, 0, img2, SENET_IMAGE_VALUES),
           SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_preprocess_memory(bytes, bytes_len, NULL, SENET_IMAGE_VALUES),
           SENET_STATUS_NULL_POINTER);
    EXPECT(senet_preprocess_memory(bytes, bytes_len, img2, 10), SENET_STATUS_BUFFER_TOO_SMALL);
    EXPECT(senet_preprocess_memory(bytes, 100, img2, SENET_IMAGE_VALUES), SENET_STATUS_FORMAT);
    EXPECT(senet_preprocess_memory((const unsigned char *)"GIF89a", 6, img2, SENET_IMAGE_VALUES),
           SENET_STATUS_FORMAT);
    EXPECT_MESSAGE("not a JPEG or PNG");
    EXPECT(senet_preprocess_memory(bytes, bytes_len, img2, SENET_IMAGE_VALUES), SENET_STATUS_OK);
    EXPECT_TRUE(memcmp(img, img2, SENET_IMAGE_VALUES * sizeof *img) == 0);
    free(bytes);

    /* senet_model_forward misuse */
    EXPECT(senet_model_forward(model, NULL, SENET_IMAGE_VALUES, 1, 224, 224, logits, 10),
           SENET_STATUS_NULL_POINTER);
    EXPECT(senet_model_forward(model, img, SENET_IMAGE_VALUES, 1, 224, 224, NULL, 10),
           SENET_STATUS_NULL_POINTER);
    EXPECT(senet_model_forward(NULL, img, SENET_IMAGE_VALUES, 1, 224, 224, logits, 10),
           SENET_STATUS_NULL_POINTER);
    EXPECT(senet_model_forward(model, img, SENET_IMAGE_VALUES, 0, 224, 224, logits, 10),
           SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_model_forward(model, img, SENET_IMAGE_VALUES, 1, 16, 16, logits, 10),
           SENET_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("H, W >= 32");
    EXPECT(senet_model_forward(model, img, SENET_IMAGE_VALUES, 2, 224, 224, logits, 20),
           SENET_STATUS_BUFFER_TOO_SMALL);
    EXPECT(senet_model_forward(model, img, SENET_IMAGE_VALUES, 1, 224, 224, logits, 9),
           SENET_STATUS_BUFFER_TOO_SMALL);
    EXPECT(senet_model_forward(model, img, SENET_IMAGE_VALUES, (size_t)-1, 224, 224, logits, 10),
           SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_model_forward(model, img, SENET_IMAGE_VALUES, 1, 224, 224, img + 5, 10),
           SENET_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("overlap");

    /* A real forward pass and its top-k. */
    EXPECT(senet_model_forward(model, img, SENET_IMAGE_VALUES, 1, 224, 224, logits, 10),
           SENET_STATUS_OK);

    /* senet_classmap_* */
    EXPECT(senet_classmap_load(NULL, &map), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_classmap_load(map_path, NULL), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_classmap_load("/nonexistent.tsv", &map), SENET_STATUS_IO);
    EXPECT_TRUE(map == NULL);
    EXPECT(senet_classmap_load(not_image, &map), SENET_STATUS_FORMAT);
    EXPECT(senet_classmap_load(map_path, &map), SENET_STATUS_OK);
    EXPECT(senet_classmap_load(map1000_path, &map1000), SENET_STATUS_OK);
    EXPECT(senet_classmap_len(map, &n), SENET_STATUS_OK);
    EXPECT_TRUE(n == 10);
    EXPECT(senet_classmap_len(map1000, &n), SENET_STATUS_OK);
    EXPECT_TRUE(n == 1000);
    EXPECT(senet_classmap_len(map, NULL), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_classmap_name(map, 3, &name), SENET_STATUS_OK);
    EXPECT_TRUE(name != NULL && strcmp(name, "class three") == 0);
    EXPECT(senet_classmap_name(map, 10, &name), SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_classmap_name(map, 0, NULL), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_classmap_name(map1000, 1, &name), SENET_STATUS_OK);
    EXPECT_TRUE(strcmp(name, "goldfish") == 0);

    /* senet_topk */
    EXPECT(senet_topk(logits, 10, 3, map, top, 3), SENET_STATUS_OK);
    EXPECT_TRUE(top[0].probability >= top[1].probability &&
                top[1].probability >= top[2].probability);
    EXPECT_TRUE(top[0].index < 10 && top[0].name != NULL);
    for (i = 1; i < 10; i++) EXPECT_TRUE(logits[top[0].index] >= logits[i]);
    EXPECT(senet_topk(logits, 10, 3, NULL, top, 3), SENET_STATUS_OK);
    EXPECT_TRUE(top[0].name == NULL);
    EXPECT(senet_topk(NULL, 10, 3, map, top, 3), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_topk(logits, 10, 3, map, NULL, 3), SENET_STATUS_NULL_POINTER);
    EXPECT(senet_topk(logits, 10, 0, map, top, 3), SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_topk(logits, 10, 11, map, top, 3), SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_topk(logits, 0, 1, map, top, 3), SENET_STATUS_INVALID_ARGUMENT);
    EXPECT(senet_topk(logits, 10, 3, map, top, 2), SENET_STATUS_BUFFER_TOO_SMALL);
    EXPECT(senet_topk(logits, 10, 3, map1000, top, 3), SENET_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("1000 names");
    /* Undefined probabilities (a NaN or +inf logit) are an error, not NaN in `top`. */
    {
        float bad[3] = {0.0f, 1.0f, 2.0f};
        bad[1] = (float)NAN;
        EXPECT(senet_topk(bad, 3, 1, NULL, top, 3), SENET_STATUS_INVALID_ARGUMENT);
        EXPECT_MESSAGE("logits[1] is NaN");
        bad[1] = (float)INFINITY;
        EXPECT(senet_topk(bad, 3, 1, NULL, top, 3), SENET_STATUS_INVALID_ARGUMENT);
        EXPECT_MESSAGE("logits[1] is inf");
        bad[1] = -(float)INFINITY;
        EXPECT(senet_topk(bad, 3, 1, NULL, top, 3), SENET_STATUS_OK);
        EXPECT_TRUE(top[0].index == 2);
    }

    /* Wrong-kind and foreign handles are detected, never dereferenced. */
    EXPECT(senet_topk(logits, 10, 3, (const SenetClassMap *)(const void *)model, top, 3),
           SENET_STATUS_INVALID_HANDLE);
    EXPECT(senet_model_num_classes((const SenetModel *)(const void *)map, &n),
           SENET_STATUS_INVALID_HANDLE);
    EXPECT(senet_model_forward((SenetModel *)(void *)&foreign, img, SENET_IMAGE_VALUES, 1, 224,
                               224, logits, 10),
           SENET_STATUS_INVALID_HANDLE);
    EXPECT_MESSAGE("not a live model handle");
    small = malloc(64);
    EXPECT(senet_model_free((SenetModel *)(void *)small), SENET_STATUS_INVALID_HANDLE);
    EXPECT(senet_classmap_free((SenetClassMap *)(void *)small), SENET_STATUS_INVALID_HANDLE);
    free(small);

    /* Concurrent forward passes on one model give the single-threaded result. */
    for (i = 0; i < 2 * 3 * 64 * 64; i++) img[i] = (float)((i * 7919) % 255) / 64.0f - 2.0f;
    EXPECT(senet_model_forward(model, img, 2 * 3 * 64 * 64, 2, 64, 64, logits, 20),
           SENET_STATUS_OK);
    for (i = 0; i < 2; i++) {
        jobs[i].model = model;
        jobs[i].input = img;
        EXPECT_TRUE(pthread_create(&threads[i], NULL, run_forward, &jobs[i]) == 0);
    }
    for (i = 0; i < 2; i++) {
        EXPECT_TRUE(pthread_join(threads[i], NULL) == 0);
        EXPECT_TRUE(jobs[i].status == SENET_STATUS_OK);
        EXPECT_TRUE(memcmp(jobs[i].logits, logits, sizeof jobs[i].logits) == 0);
    }

    /* The last error is per thread. */
    EXPECT(senet_model_num_classes(model, &n), SENET_STATUS_OK);
    EXPECT_TRUE(pthread_create(&threads[0], NULL, fail_on_thread, NULL) == 0);
    EXPECT_TRUE(pthread_join(threads[0], &thread_ok) == 0);
    EXPECT_TRUE(thread_ok != NULL);
    EXPECT_TRUE(senet_last_error()[0] == '\0');

    /* Free, then every use of the stale handles is reported. */
    stale = model;
    stale_map = map;
    EXPECT(senet_model_free(model), SENET_STATUS_OK);
    EXPECT(senet_model_free(stale), SENET_STATUS_INVALID_HANDLE);
    EXPECT(senet_model_load(stale, ckpt), SENET_STATUS_INVALID_HANDLE);
    EXPECT(senet_model_num_classes(stale, &n), SENET_STATUS_INVALID_HANDLE);
    EXPECT(senet_model_set_threads(stale, 1), SENET_STATUS_INVALID_HANDLE);
    EXPECT(senet_model_set_device(stale, SENET_DEVICE_CPU, 0), SENET_STATUS_INVALID_HANDLE);
    EXPECT(senet_model_forward(stale, img, SENET_IMAGE_VALUES, 1, 224, 224, logits, 10),
           SENET_STATUS_INVALID_HANDLE);
    /* A new model never reuses a freed handle's value. */
    EXPECT(senet_model_create("seresnet18", 10, &other), SENET_STATUS_OK);
    EXPECT_TRUE(other != stale);
    EXPECT(senet_model_free(other), SENET_STATUS_OK);
    EXPECT(senet_classmap_free(map), SENET_STATUS_OK);
    EXPECT(senet_classmap_free(stale_map), SENET_STATUS_INVALID_HANDLE);
    EXPECT(senet_classmap_len(stale_map, &n), SENET_STATUS_INVALID_HANDLE);
    EXPECT(senet_classmap_name(stale_map, 0, &name), SENET_STATUS_INVALID_HANDLE);
    EXPECT(senet_topk(small_logits, 2, 1, stale_map, top, 3), SENET_STATUS_INVALID_HANDLE);
    EXPECT(senet_classmap_free(map1000), SENET_STATUS_OK);
    EXPECT(senet_model_free(NULL), SENET_STATUS_OK);
    EXPECT(senet_classmap_free(NULL), SENET_STATUS_OK);
    free(img);

    if (failures != 0) {
        fprintf(stderr, "abi_misuse: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("abi_misuse: all %d checks passed\n", checks);
    return 0;
}
