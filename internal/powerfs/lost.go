package powerfs

import "fmt"

// Lost says what a reboot rolled back.
type Lost struct {
	// Files is how many files lost something; Bytes is how many bytes
	// were written to them since their last fsync (a truncation or
	// fallocate counts none).
	Files int
	Bytes int64
}

func (l Lost) String() string {
	return fmt.Sprintf("%d bytes written to %d files since their last fsync", l.Bytes, l.Files)
}
