package volume

// CRC32C of a concatenation from the CRCs of its parts (zlib's
// crc32_combine, for the Castagnoli polynomial): crc(A‖B) is crc(A) run
// through len(B) zero bytes, xor crc(B). Format 2 records use it to get
// the CRC of the whole data from the block CRCs, so writing and checking a
// needle passes over its data once.

// castagnoliReversed is the Castagnoli polynomial, bit-reversed.
const castagnoliReversed = 0x82f63b78

// gf2Matrix is a 32×32 matrix over GF(2): column i is the image of bit i.
type gf2Matrix [32]uint32

func (m *gf2Matrix) times(vec uint32) uint32 {
	var sum uint32
	for i := 0; vec != 0; i, vec = i+1, vec>>1 {
		if vec&1 != 0 {
			sum ^= m[i]
		}
	}
	return sum
}

func (m *gf2Matrix) square() gf2Matrix {
	var sq gf2Matrix
	for i := range sq {
		sq[i] = m.times(m[i])
	}
	return sq
}

// crc32cShift returns crc run through n zero bytes (n >= 0).
func crc32cShift(crc uint32, n int64) uint32 {
	if n <= 0 {
		return crc
	}
	var odd gf2Matrix // one zero bit
	odd[0] = castagnoliReversed
	for i := 1; i < 32; i++ {
		odd[i] = 1 << (i - 1)
	}
	even := odd.square() // two zero bits
	odd = even.square()  // four zero bits
	for {
		even = odd.square() // first pass: one zero byte
		if n&1 != 0 {
			crc = even.times(crc)
		}
		if n >>= 1; n == 0 {
			return crc
		}
		odd = even.square()
		if n&1 != 0 {
			crc = odd.times(crc)
		}
		if n >>= 1; n == 0 {
			return crc
		}
	}
}

// shiftBlock runs a CRC through blockSize zero bytes.
var shiftBlock = func() gf2Matrix {
	var m gf2Matrix
	for i := range m {
		m[i] = crc32cShift(1<<i, blockSize)
	}
	return m
}()

// wholeCRC returns the CRC32C of data of dataLen bytes from blockCRCs, the
// CRC32C of each of its blocks (the last may be short), in order.
func wholeCRC(blockCRCs func(i int64) uint32, dataLen uint32) uint32 {
	var crc uint32 // of no bytes
	n := blockCount(dataLen)
	for i := range n {
		if last := int64(dataLen) - i*blockSize; last < blockSize {
			crc = crc32cShift(crc, last)
		} else {
			crc = shiftBlock.times(crc)
		}
		crc ^= blockCRCs(i)
	}
	return crc
}
