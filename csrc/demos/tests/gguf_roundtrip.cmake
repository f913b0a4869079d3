# Train, save to GGUF and sample; then load the file and sample twice with the
# same seed. All three samples must be byte-identical.
#   cmake -DPROGRAM=<textgen-train> -DDATA=<text> -DWORK_DIR=<dir> -P gguf_roundtrip.cmake
set(model "${WORK_DIR}/roundtrip.gguf")
file(REMOVE "${model}")
set(sample_args --threads 1 --seed 7 --sample 120 --temperature 0.9 --top-k 5 --prompt "ROMEO:")

function(run_and_extract out_var)
  execute_process(COMMAND "${PROGRAM}" ${ARGN} ${sample_args}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "textgen-train exited with ${rc}")
  endif()
  if(NOT out MATCHES "--- sample [^\n]*\n(.*)\n--- end of sample ---")
    message(FATAL_ERROR "no sample in the output")
  endif()
  set(${out_var} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()

run_and_extract(trained --data "${DATA}" --steps 40 --block 32 --eval-every 40 --eval-batches 1
                        --save "${model}")
if(NOT EXISTS "${model}")
  message(FATAL_ERROR "${model} was not written")
endif()
run_and_extract(loaded_a --load "${model}")
run_and_extract(loaded_b --load "${model}")

if(NOT loaded_a STREQUAL loaded_b)
  message(FATAL_ERROR "two samples from the loaded model differ")
endif()
if(NOT trained STREQUAL loaded_a)
  message(FATAL_ERROR "the sample after loading differs from the one after training")
endif()
string(LENGTH "${trained}" n)
message("ok: identical samples of ${n} bytes")
