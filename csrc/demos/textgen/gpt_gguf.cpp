#include "gpt_gguf.h"

#include "files.h"
#include "ggml_ptr.h"

#include <vector>

namespace demo {

namespace {

constexpr const char * kArch = "textgen-char-gpt";

const char * const kKeyVocab   = "textgen.vocab_bytes";
const char * const kKeyBlock   = "textgen.block_size";
const char * const kKeyLayers  = "textgen.n_layer";
const char * const kKeyEmbd    = "textgen.n_embd";
const char * const kKeyHeads   = "textgen.n_head";

bool get_u32(const gguf_context * g, const char * key, int * out, std::string * err) {
    const int64_t id = gguf_find_key(g, key);
    if (id < 0 || gguf_get_kv_type(g, id) != GGUF_TYPE_UINT32) {
        *err = std::string("missing or mistyped key ") + key;
        return false;
    }
    const uint32_t v = gguf_get_val_u32(g, id);
    if (v > 1u << 20) {
        *err = std::string("implausible value for ") + key;
        return false;
    }
    *out = int(v);
    return true;
}

} // namespace

bool save_gguf(const std::string & path, const GptModel & model, const CharVocab & vocab, std::string * err) {
    const GptConfig & cfg = model.config();
    GgufPtr g(gguf_init_empty());
    gguf_set_val_str(g.get(), "general.architecture", kArch);
    gguf_set_arr_data(g.get(), kKeyVocab, GGUF_TYPE_UINT8, vocab.bytes().data(), vocab.bytes().size());
    gguf_set_val_u32(g.get(), kKeyBlock,  uint32_t(cfg.block));
    gguf_set_val_u32(g.get(), kKeyLayers, uint32_t(cfg.n_layer));
    gguf_set_val_u32(g.get(), kKeyEmbd,   uint32_t(cfg.n_embd));
    gguf_set_val_u32(g.get(), kKeyHeads,  uint32_t(cfg.n_head));

    // gguf writes from tensor->data, so copy the weights off the backend (it may be a GPU).
    const auto & params = model.weights().params();
    size_t bytes = 0;
    for (const ggml_tensor * t : params) {
        bytes += ggml_nbytes(t) + ggml_tensor_overhead() + GGML_MEM_ALIGN;
    }
    ggml_init_params ip = {bytes, nullptr, /*no_alloc =*/ false};
    ContextPtr host(ggml_init(ip));
    for (const ggml_tensor * t : params) {
        ggml_tensor * h = ggml_dup_tensor(host.get(), t);
        ggml_set_name(h, t->name);
        ggml_backend_tensor_get(t, h->data, 0, ggml_nbytes(t));
        gguf_add_tensor(g.get(), h);
    }
    if (!gguf_write_to_file(g.get(), path.c_str(), /*only_meta =*/ false)) {
        *err = "could not write '" + path + "'";
        return false;
    }
    return true;
}

std::unique_ptr<GptModel> load_gguf(const std::string & path, const Backend & backend,
                                    CharVocab * vocab, std::string * err) {
    if (!check_readable(path, err)) {
        return nullptr;
    }
    ggml_context * data_raw = nullptr;
    gguf_init_params ip = {/*no_alloc =*/ false, &data_raw};
    GgufPtr g(gguf_init_from_file(path.c_str(), ip));
    ContextPtr data(data_raw);
    if (!g) {
        *err = "'" + path + "' is not a readable GGUF file";
        return nullptr;
    }
    const int64_t arch = gguf_find_key(g.get(), "general.architecture");
    if (arch < 0 || gguf_get_kv_type(g.get(), arch) != GGUF_TYPE_STRING ||
        std::string(gguf_get_val_str(g.get(), arch)) != kArch) {
        *err = "'" + path + "' is not a textgen-train model (general.architecture != " + kArch + ")";
        return nullptr;
    }
    const int64_t vid = gguf_find_key(g.get(), kKeyVocab);
    if (vid < 0 || gguf_get_kv_type(g.get(), vid) != GGUF_TYPE_ARRAY ||
        gguf_get_arr_type(g.get(), vid) != GGUF_TYPE_UINT8) {
        *err = std::string("missing or mistyped key ") + kKeyVocab;
        return nullptr;
    }
    const uint8_t * vb = static_cast<const uint8_t *>(gguf_get_arr_data(g.get(), vid));
    if (!CharVocab::from_bytes(std::vector<uint8_t>(vb, vb + gguf_get_arr_n(g.get(), vid)), vocab)) {
        *err = std::string("bad vocabulary in ") + kKeyVocab;
        return nullptr;
    }

    GptConfig cfg;
    cfg.vocab = vocab->size();
    if (!get_u32(g.get(), kKeyBlock, &cfg.block, err) || !get_u32(g.get(), kKeyLayers, &cfg.n_layer, err) ||
        !get_u32(g.get(), kKeyEmbd, &cfg.n_embd, err) || !get_u32(g.get(), kKeyHeads, &cfg.n_head, err)) {
        return nullptr;
    }
    const std::string bad = validate(cfg);
    if (!bad.empty()) {
        *err = "'" + path + "': " + bad;
        return nullptr;
    }

    auto model = std::make_unique<GptModel>(cfg);
    if (!model->weights().allocate(backend.main())) {
        *err = std::string("could not allocate the weights on ") + backend.name();
        return nullptr;
    }
    for (ggml_tensor * t : model->weights().params()) {
        const ggml_tensor * src = ggml_get_tensor(data.get(), t->name);
        if (!src || src->type != GGML_TYPE_F32 || !ggml_are_same_shape(src, t)) {
            *err = "'" + path + "': tensor " + t->name + " is missing or has the wrong type or shape";
            return nullptr;
        }
        ggml_backend_tensor_set(t, src->data, 0, ggml_nbytes(t));
    }
    return model;
}

} // namespace demo
