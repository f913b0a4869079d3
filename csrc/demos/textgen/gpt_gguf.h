// Saves and loads a GptModel with its vocabulary as one GGUF file.
#pragma once

#include "backend.h"
#include "gpt_model.h"
#include "vocab.h"

#include <memory>
#include <string>

namespace demo {

// False with a message in *err if the file could not be written.
bool save_gguf(const std::string & path, const GptModel & model, const CharVocab & vocab, std::string * err);

// Reads the config, creates the model on backend and fills its weights. Returns
// null with a message in *err for a missing, unreadable or foreign file.
std::unique_ptr<GptModel> load_gguf(const std::string & path, const Backend & backend,
                                    CharVocab * vocab, std::string * err);

} // namespace demo
