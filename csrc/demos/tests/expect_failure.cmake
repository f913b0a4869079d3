# Runs a demo that must fail cleanly: a non-zero exit code (not a crash signal)
# and an error message matching REGEX.
#   cmake -DPROGRAM=<exe> -DARGS=<;-list> -DREGEX=<regex> -P expect_failure.cmake
execute_process(COMMAND "${PROGRAM}" ${ARGS}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("exit: ${rc}\n${out}${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "expected a non-zero exit code")
endif()
# execute_process reports a signal (abort, segfault) as text, not a number.
if(NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "the program crashed instead of exiting with an error")
endif()
if(NOT "${out}${err}" MATCHES "${REGEX}")
  message(FATAL_ERROR "no message matching '${REGEX}'")
endif()
