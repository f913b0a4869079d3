// pyggml_train's Vulkan pipelines: one per op of ours (shaders/*.comp), created with
// ggml-vulkan's own pipeline machinery. Included by ggml-vulkan.cpp (patch 0022) before
// vk_device_struct, which holds one of these per device.
#pragma once

struct pyggml_vk_pipelines {
    vk_pipeline out_prod;
    vk_pipeline norm_back;
    vk_pipeline gelu_back;
    vk_pipeline dropout;
    vk_pipeline ce_sparse;
    vk_pipeline ce_sparse_back;
    vk_pipeline adamw;
    vk_pipeline attn_causal;
    vk_pipeline attn_causal_back;
};
