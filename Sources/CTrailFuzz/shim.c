// CTrailFuzz only declares libFuzzer's driver (include/CTrailFuzz.h); SwiftPM needs one source file.
#include "CTrailFuzz.h"
