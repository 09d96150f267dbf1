//! The same fields lifted out of s3s's per-operation input structs. s3s gives every operation
//! its own input type (GetObjectInput, HeadObjectInput, ...) with fields of the same names and
//! types; these macros read such a group of fields from any of them, so each operation's code
//! names what it does with them once.

/// The five `x-amz-checksum-*` values of a PUT or UploadPart, in `ingest::body_checks`'s order.
macro_rules! checksum_values {
    ($i:expr) => {
        [
            $i.checksum_crc32.as_ref(),
            $i.checksum_crc32c.as_ref(),
            $i.checksum_crc64nvme.as_ref(),
            $i.checksum_sha1.as_ref(),
            $i.checksum_sha256.as_ref(),
        ]
    };
}

/// The `x-amz-copy-source-if-*` conditions of a CopyObject or UploadPartCopy.
macro_rules! copy_source_conds {
    ($i:expr) => {
        $crate::s3::copy::SourceConds {
            if_match: $i.copy_source_if_match,
            if_none_match: $i.copy_source_if_none_match,
            if_modified_since: $i.copy_source_if_modified_since,
            if_unmodified_since: $i.copy_source_if_unmodified_since,
        }
    };
}

/// A GetObject's or HeadObject's read: its conditions, range and part number.
macro_rules! read_req {
    ($i:expr, want_body: $want:expr) => {
        $crate::s3::get::ReadReq {
            cond: $crate::s3::cond::ReadConds {
                if_match: $i.if_match,
                if_none_match: $i.if_none_match,
                if_modified_since: $i.if_modified_since,
                if_unmodified_since: $i.if_unmodified_since,
            },
            range: $i.range,
            part_number: $i.part_number,
            want_body: $want,
        }
    };
}

/// The `response-*` query overrides of a GetObject or HeadObject: checked (each must be a
/// valid header value), then borrowed as `headers::Overrides`.
macro_rules! response_overrides {
    ($i:expr) => {{
        $crate::s3::get::check_overrides([
            $i.response_content_type.as_ref(),
            $i.response_content_encoding.as_ref(),
            $i.response_content_language.as_ref(),
            $i.response_content_disposition.as_ref(),
            $i.response_cache_control.as_ref(),
        ])?;
        $crate::s3::headers::Overrides {
            content_type: $i.response_content_type.as_deref(),
            content_encoding: $i.response_content_encoding.as_deref(),
            content_language: $i.response_content_language.as_deref(),
            content_disposition: $i.response_content_disposition.as_deref(),
            cache_control: $i.response_cache_control.as_deref(),
            expires: $i.response_expires.as_ref(),
        }
    }};
}

/// A PutObjectAcl's or PutBucketAcl's body and headers: only the private canned ACL (or the
/// owner-only grant it equals) is taken; anything else returns NotImplemented.
macro_rules! private_acl_only {
    ($i:expr) => {
        if !$crate::s3::bucket::is_private_acl(
            $i.acl.as_ref().map(|a| a.as_str()),
            [
                $i.grant_full_control.as_ref(),
                $i.grant_read.as_ref(),
                $i.grant_read_acp.as_ref(),
                $i.grant_write.as_ref(),
                $i.grant_write_acp.as_ref(),
            ],
            $i.access_control_policy.as_ref(),
        ) {
            return Err($crate::s3::bucket::acl_not_implemented());
        }
    };
}

pub(crate) use {
    checksum_values, copy_source_conds, private_acl_only, read_req, response_overrides,
};
