// classify: the top-5 classes of image files, with the RAII wrapper of senet.hpp.
//
//   classify MODEL CKPT CLASS_MAP IMAGE...
//
// Build: c++ -std=c++17 -I examples/cpp classify.cpp $(pkg-config --cflags --libs senet)
#include "senet.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>

int main(int argc, char **argv) {
    if (argc < 5) {
        std::cerr << "usage: " << argv[0] << " MODEL CKPT CLASS_MAP IMAGE...\n";
        return 2;
    }
    try {
        senet::ClassMap names(argv[3]);
        senet::Model model(argv[1], names.size(), argv[2]);
        std::vector<float> batch;
        for (int i = 4; i < argc; i++) senet::preprocess_file(argv[i], batch);
        const std::size_t n = static_cast<std::size_t>(argc - 4), classes = model.num_classes();
        std::vector<float> logits = model.forward(batch, n);
        for (std::size_t i = 0; i < n; i++) {
            std::printf("%s\n", argv[4 + i]);
            for (const senet::TopClass &c :
                 senet::topk(&logits[i * classes], classes, std::min<std::size_t>(5, classes),
                             names)) {
                std::printf("  %6.2f%%  %4zu  %s\n", 100.0 * c.probability, c.index,
                            c.name.c_str());
            }
        }
    } catch (const senet::Error &e) {
        std::cerr << "classify: " << e.what() << " (" << senet_status_string(e.status())
                  << ")\n";
        return 1;
    }
    return 0;
}
