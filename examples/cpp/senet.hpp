// senet.hpp: a small header-only C++ wrapper of the libsenet C ABI (senet.h): RAII handles
// that free themselves, exceptions carrying the library's status and message.
#ifndef SENET_HPP
#define SENET_HPP

#include <senet.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace senet {

// A failed call: the status and senet_last_error()'s message.
class Error : public std::runtime_error {
public:
    Error(SenetStatus status, const std::string &what)
        : std::runtime_error(what + ": " + senet_last_error()), status_(status) {}
    SenetStatus status() const noexcept { return status_; }

private:
    SenetStatus status_;
};

inline void check(SenetStatus status, const char *what) {
    if (status != SENET_STATUS_OK) throw Error(status, what);
}

// Owns a handle of type T, freed by Free when the owner goes away. Movable, not copyable.
template <typename T, SenetStatus (*Free)(T *)>
class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *raw) noexcept : raw_(raw) {}
    Handle(Handle &&other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
    Handle &operator=(Handle &&other) noexcept {
        if (this != &other) {
            reset();
            raw_ = std::exchange(other.raw_, nullptr);
        }
        return *this;
    }
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    ~Handle() { reset(); }

    T *get() const noexcept { return raw_; }
    void reset() noexcept {
        if (raw_ != nullptr) Free(raw_);
        raw_ = nullptr;
    }

private:
    T *raw_ = nullptr;
};

// Class names (index order).
class ClassMap {
public:
    explicit ClassMap(const std::string &path) {
        SenetClassMap *raw = nullptr;
        check(senet_classmap_load(path.c_str(), &raw), "senet_classmap_load");
        handle_ = Handle<SenetClassMap, senet_classmap_free>(raw);
    }
    std::size_t size() const {
        std::size_t n = 0;
        check(senet_classmap_len(handle_.get(), &n), "senet_classmap_len");
        return n;
    }
    const SenetClassMap *get() const noexcept { return handle_.get(); }

private:
    Handle<SenetClassMap, senet_classmap_free> handle_;
};

// One class of a top-k; the name is copied.
struct TopClass {
    std::size_t index;
    double probability;
    std::string name;
};

// A model with its weights. Forward passes on one Model are serialised by the library.
class Model {
public:
    Model(const std::string &variant, std::size_t num_classes, const std::string &checkpoint) {
        SenetModel *raw = nullptr;
        check(senet_model_create(variant.c_str(), num_classes, &raw), "senet_model_create");
        handle_ = Handle<SenetModel, senet_model_free>(raw);
        check(senet_model_load(raw, checkpoint.c_str()), "senet_model_load");
    }
    void set_threads(std::size_t threads) {
        check(senet_model_set_threads(handle_.get(), threads), "senet_model_set_threads");
    }
    std::size_t num_classes() const {
        std::size_t n = 0;
        check(senet_model_num_classes(handle_.get(), &n), "senet_model_num_classes");
        return n;
    }
    // Logits [batch][num_classes] of `batch` preprocessed 224x224 images (NCHW).
    std::vector<float> forward(const std::vector<float> &images, std::size_t batch) {
        std::vector<float> logits(batch * num_classes());
        check(senet_model_forward(handle_.get(), images.data(), images.size(), batch,
                                  SENET_IMAGE_SIZE, SENET_IMAGE_SIZE, logits.data(),
                                  logits.size()),
              "senet_model_forward");
        return logits;
    }

private:
    Handle<SenetModel, senet_model_free> handle_;
};

// Appends the preprocessed image at `path` (SENET_IMAGE_VALUES floats) to `batch`.
inline void preprocess_file(const std::string &path, std::vector<float> &batch) {
    std::size_t at = batch.size();
    batch.resize(at + SENET_IMAGE_VALUES);
    check(senet_preprocess_file(path.c_str(), batch.data() + at, SENET_IMAGE_VALUES),
          "senet_preprocess_file");
}

// The k most likely classes of one row of logits.
inline std::vector<TopClass> topk(const float *row, std::size_t classes, std::size_t k,
                                  const ClassMap &map) {
    std::vector<SenetClass> raw(k);
    check(senet_topk(row, classes, k, map.get(), raw.data(), raw.size()), "senet_topk");
    std::vector<TopClass> out;
    for (const SenetClass &c : raw) out.push_back({c.index, c.probability, c.name});
    return out;
}

}  // namespace senet

#endif  // SENET_HPP
