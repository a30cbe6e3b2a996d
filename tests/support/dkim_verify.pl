#!/usr/bin/perl
# Verify the DKIM signatures of the message on standard input with Mail::DKIM, an
# implementation independent of dkimpy, without DNS: the TXT records come from the
# environment variable DKIM_RECORDS, one zone-file line per line, exactly as
# `mailspool dkim keygen` prints them, e.g.
#   s1._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; " "p=MIIB..." "..."
# Net::DNS parses each line as a zone file would, so the printed record's syntax is tested
# too. Prints one line per signature, then the overall result:
#   signature d=example.com s=s1 a=rsa-sha256 result=pass detail=pass
#   result=pass
use strict;
use warnings;
use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;
use Net::DNS;

# A stand-in for Net::DNS::Resolver: Mail::DKIM::DNS::resolver() documents that any
# object with its send() and errorstring() will do.
package StaticResolver;

sub new {
    my ( $class, @records ) = @_;
    return bless { records => \@records, error => 'NOERROR' }, $class;
}

sub send {
    my ( $self, $name, $type ) = @_;
    my @answers =
      grep { lc( $_->owner ) eq lc($name) && $_->type eq uc($type) } @{ $self->{records} };
    my $packet = Net::DNS::Packet->new( $name, $type, 'IN' );
    $packet->header->qr(1);
    $packet->header->rcode( @answers ? 'NOERROR' : 'NXDOMAIN' );
    $packet->push( answer => @answers );
    return $packet;
}

sub errorstring { return $_[0]->{error} }

package main;

my @records = map { Net::DNS::RR->new($_) } grep { /\S/ } split /\n/, ( $ENV{DKIM_RECORDS} // '' );
Mail::DKIM::DNS::resolver( StaticResolver->new(@records) );

binmode STDIN;
my $dkim = Mail::DKIM::Verifier->new();
while ( my $line = <STDIN> ) {
    $line =~ s/\015?\012\z//;
    $dkim->PRINT("$line\015\012");
}
$dkim->CLOSE;

foreach my $sig ( $dkim->signatures ) {
    my $detail = $sig->result_detail // '';
    $detail =~ s/\s+/_/g;
    printf "signature d=%s s=%s a=%s result=%s detail=%s\n",
      $sig->domain, $sig->selector, $sig->algorithm, $sig->result, $detail;
}
printf "result=%s\n", $dkim->result;
