package nbd

// Wire constants of the NBD protocol (doc/proto.md in NetworkBlockDevice/nbd).
// Everything on the wire is big-endian.

const (
	magicNBD          = 0x4e42444d41474943 // "NBDMAGIC"
	magicIHaveOpt     = 0x49484156454f5054 // "IHAVEOPT"
	magicOptReply     = 0x0003e889045565a9
	magicRequest      = 0x25609513
	magicSimpleReply  = 0x67446698
	magicStructReply  = 0x668e33ef
	handshakeZeroPad  = 124 // zero bytes after NBD_OPT_EXPORT_NAME's reply
	requestHeaderSize = 28
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	clientFixedNewstyle = 1 << 0
	clientNoZeroes      = 1 << 1
)

// Transmission flags.
const (
	tflagHasFlags        = 1 << 0
	tflagReadOnly        = 1 << 1
	tflagSendFlush       = 1 << 2
	tflagSendFUA         = 1 << 3
	tflagSendTrim        = 1 << 5
	tflagSendWriteZeroes = 1 << 6
	tflagSendDF          = 1 << 7
	tflagCanMultiConn    = 1 << 8
)

// Options.
const (
	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
	optListMetaContext = 9
	optSetMetaContext  = 10
)

// Option replies.
const (
	repAck         = 1
	repServer      = 2
	repInfo        = 3
	repMetaContext = 4

	repErrUnsup    = 1<<31 + 1
	repErrPolicy   = 1<<31 + 2
	repErrInvalid  = 1<<31 + 3
	repErrPlatform = 1<<31 + 4
	repErrUnknown  = 1<<31 + 6
	repErrTooBig   = 1<<31 + 9
)

// NBD_INFO_* items of NBD_REP_INFO.
const (
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3
)

// Commands and command flags.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
	cmdBlockStatus = 7

	cmdFlagFUA      = 1 << 0
	cmdFlagNoHole   = 1 << 1
	cmdFlagDF       = 1 << 2
	cmdFlagReqOne   = 1 << 3
	cmdFlagFastZero = 1 << 4
)

// Structured reply chunk types and flags.
const (
	replyFlagDone = 1 << 0

	replyTypeNone        = 0
	replyTypeOffsetData  = 1
	replyTypeOffsetHole  = 2
	replyTypeBlockStatus = 5
	replyTypeError       = 1<<15 + 1
)

// Error values (errno numbers fixed by the protocol).
const (
	errPerm     = 1
	errIO       = 5
	errNoMem    = 12
	errInval    = 22
	errNoSpc    = 28
	errOverflow = 75
	errNotSup   = 95
)

// base:allocation states.
const (
	stateHole = 1 << 0
	stateZero = 1 << 1
)

// metaBaseAllocation is the only metadata context; its id is the one the
// server hands out for it.
const (
	metaBaseAllocation   = "base:allocation"
	metaBaseAllocationID = 1
)

// Limits on what a client may make the server hold.
const (
	// MaxRequest is the largest READ or WRITE payload served, advertised as
	// the maximum block size.
	MaxRequest = 32 << 20
	// PreferredBlock is the advertised preferred block size.
	PreferredBlock = 4096
	// maxOption bounds an option's data during the handshake (names and
	// queries are at most 4096 bytes each by the protocol).
	maxOption = 64 << 10
	// maxString is the protocol's limit on names and queries.
	maxString = 4096
	// maxExtents bounds the descriptors of one BLOCK_STATUS reply; a client
	// asks again for the rest.
	maxExtents = 4096
)
