"""Code the tests share: environment and skips (env), gradient checks (gradcheck), the
product helpers of the kernel record (matmul), small training and spec fixtures (training,
specs), a live studio server (studio_server), the API fuzzer (fuzz_api) and the kill drill
(kill_drill). Test modules import from here and from ``reference``, never from each other."""
