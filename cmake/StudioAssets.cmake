# The studio's files that do not live in the package's source directory:
# - its third-party JavaScript (LiteGraph.js, Chart.js, dagre), fetched with npm at build time, pinned
#   by pyggml_train/studio/frontend/package-lock.json, installed under
#   pyggml_train/studio/static/vendor/ and never committed. Without npm the wheel builds
#   anyway; `pyggml-train studio` then says how to fetch the files;
# - the example specs (examples/specs/), one click away in an installed studio.
function(pyggml_studio_assets)
  set(_vendor "${CMAKE_BINARY_DIR}/studio-vendor")
  execute_process(
    COMMAND "${Python_EXECUTABLE}" "${PROJECT_SOURCE_DIR}/pyggml_train/studio/assets.py"
            --if-npm --out "${_vendor}"
    RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "fetching the studio's npm assets failed (exit ${_rc}); "
                        "build with -DPYGGML_STUDIO_ASSETS=OFF to skip them")
  endif()
  if(EXISTS "${_vendor}/.lock-sha256")
    install(DIRECTORY "${_vendor}/" DESTINATION pyggml_train/studio/static/vendor)
  else()
    message(WARNING "npm not found: the wheel has no studio assets; "
                    "`pyggml-train studio` will say how to fetch them")
  endif()
  if(EXISTS "${PROJECT_SOURCE_DIR}/examples/specs")
    install(DIRECTORY "${PROJECT_SOURCE_DIR}/examples/specs/"
            DESTINATION pyggml_train/studio/examples FILES_MATCHING PATTERN "*.json")
  endif()
endfunction()
