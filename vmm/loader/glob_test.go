package loader

import "path/filepath"

var filepathGlob = filepath.Glob
