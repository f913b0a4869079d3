# Runs a demo and checks one number it prints against a bound.
#   cmake -DPROGRAM=<exe> -DARGS=<;-list> -DREGEX=<regex with one (number) group>
#         [-DMIN=<x>] [-DMAX=<x>] -P check_metric.cmake
# A ctest regex could only say "the line is there"; this also says how far off the
# number was when it fails.
execute_process(COMMAND "${PROGRAM}" ${ARGS}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} exited with ${rc}")
endif()
if(NOT out MATCHES "${REGEX}")
  message(FATAL_ERROR "no line matching '${REGEX}' in the output")
endif()
set(value "${CMAKE_MATCH_1}")
if(DEFINED MIN AND value LESS MIN)
  message(FATAL_ERROR "${value} is below the required minimum ${MIN}")
endif()
if(DEFINED MAX AND value GREATER MAX)
  message(FATAL_ERROR "${value} is above the allowed maximum ${MAX}")
endif()
message("ok: ${value} (min ${MIN}, max ${MAX})")
