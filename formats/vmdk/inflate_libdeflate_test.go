//go:build cgo && libdeflate

package vmdk

func init() {
	decoders = append(decoders, struct {
		name string
		new  func() grainInflater
	}{"libdeflate", func() grainInflater { return new(cDecoder) }})
}
