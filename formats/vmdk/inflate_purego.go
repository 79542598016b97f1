//go:build !(cgo && libdeflate)

package vmdk

// grainDecoder inflates grains. This build's is pure Go (klauspost/compress);
// built with cgo and -tags libdeflate it is libdeflate's.
type grainDecoder = goDecoder

// inflaterName names the grain inflater this build uses.
const inflaterName = "klauspost"
